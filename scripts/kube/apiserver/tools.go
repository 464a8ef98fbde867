//go:build tools

// Package tools names the commands this module exists to build (scripts/kube/build).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
