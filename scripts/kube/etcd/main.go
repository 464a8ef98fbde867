// etcd's server, as its own main package does it: the module proxy serves etcd's library
// modules, not a command to `go install`.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
