//go:build tools

// Package tools names the command this module exists to build (scripts/kube/build).
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
