//go:build tools

// Package tools names the other command this module exists to build (scripts/images/build): the
// CloudNativePG operator's manager, the same binary in its image and in every instance's pod.
package tools

import (
	_ "github.com/cloudnative-pg/cloudnative-pg/cmd/manager"
)
