//go:build tools

// Package tools pins the main package this wrapper builds.
package tools

import _ "sigs.k8s.io/kind"
