// CoreDNS with only the plugins the lab cluster's DNS needs (the kubernetes zone, a cache, health
// and readiness, errors and query logs): the stock main links every plugin, cloud DNS providers
// included, which would triple the build. Built by scripts/images/build as the coredns image.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
