//go:build !linux

package main

// platformCommand knows no extra subcommands outside Linux (e.g. wasip1).
func platformCommand(cmd string, args []string) bool { return false }
