//go:build !linux

package wasm

// threadCPU is not measured outside Linux.
func threadCPU() int64 { return 0 }
