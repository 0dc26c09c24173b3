//go:build tools

// Package tools pins the Kubernetes control-plane commands built for tests.
// k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
// with local paths, so `go install` refuses it; this module replaces each
// staging module with its published v0.33.x tag instead.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
