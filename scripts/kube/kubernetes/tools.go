//go:build tools

// Package tools names the commands this module exists to build (scripts/kube/build): the control
// plane and node binaries of the lab's single-node cluster (lab/kube) and kubectl. The API server
// and kubectl also serve test/k8s.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
