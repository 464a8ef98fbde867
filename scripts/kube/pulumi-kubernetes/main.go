// The Pulumi Kubernetes resource provider (plugin `resource kubernetes`), as upstream's
// cmd/pulumi-resource-kubernetes/main.go builds it. That command embeds files its `go generate`
// step writes next to it, so it cannot be built from the read-only module cache: this wrapper
// does the same few lines, and scripts/kube/build-pulumi-kubernetes writes the two embedded
// files (with upstream's generate.go) into a scratch copy of this folder before building.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
