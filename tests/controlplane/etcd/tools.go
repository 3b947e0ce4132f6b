//go:build tools

// Package tools records the etcd main package (go.etcd.io/etcd/server/v3,
// the module root, a thin wrapper around etcdmain) that ../build.sh compiles,
// so that `go mod tidy` keeps its dependencies. It is never built.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
