//go:build !wasip1

package main

import "os"

// rawList lists dir/name as written: the kernel resolves "..".
func rawList(dir, name string) ([]string, error) {
	entries, err := os.ReadDir(dir + "/" + name)
	if err != nil {
		return nil, err
	}
	return entryNames(entries), nil
}

// rawLink hard-links oldDir/oldName to newDir/newName, paths as written.
func rawLink(oldDir, oldName, newDir, newName string) error {
	return os.Link(oldDir+"/"+oldName, newDir+"/"+newName)
}
