package main

import (
	"fmt"
	"strconv"
	"strings"
)

// byteSize is a flag value holding a number of bytes, written as a plain
// number or with a binary unit: 512MiB, 2GiB, 64k (k, m, g and t, with or
// without "iB", any case, are powers of 1024).
type byteSize uint64

var byteUnits = []struct {
	suffixes []string
	shift    uint
}{
	{[]string{"tib", "t"}, 40},
	{[]string{"gib", "g"}, 30},
	{[]string{"mib", "m"}, 20},
	{[]string{"kib", "k"}, 10},
	{[]string{"b"}, 0},
}

// String writes the size with the largest unit that divides it.
func (b *byteSize) String() string {
	v := uint64(*b)
	for _, u := range byteUnits[:4] {
		if v != 0 && v%(1<<u.shift) == 0 {
			return strconv.FormatUint(v>>u.shift, 10) + strings.ToUpper(u.suffixes[0][:1]) + "iB"
		}
	}
	return strconv.FormatUint(v, 10)
}

// Set parses a size.
func (b *byteSize) Set(s string) error {
	text, shift := splitUnit(strings.ToLower(strings.TrimSpace(s)))
	n, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a size: give bytes, or a number with KiB, MiB, GiB or TiB", s)
	}
	if n > (1<<64-1)>>shift {
		return fmt.Errorf("%q is too large", s)
	}
	*b = byteSize(n << shift)
	return nil
}

// splitUnit takes the unit off a lower-case size and returns the number
// and the unit's power of two.
func splitUnit(text string) (number string, shift uint) {
	for _, u := range byteUnits {
		for _, suffix := range u.suffixes {
			if rest, ok := strings.CutSuffix(text, suffix); ok {
				return strings.TrimSpace(rest), u.shift
			}
		}
	}
	return text, 0
}

// Type names the value in --help.
func (b *byteSize) Type() string { return "size" }
