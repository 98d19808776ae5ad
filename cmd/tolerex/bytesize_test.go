package main

import "testing"

func TestByteSize(t *testing.T) {
	good := map[string]uint64{
		"0":           0,
		"1048576":     1 << 20,
		"256MiB":      256 << 20,
		"256mib":      256 << 20,
		"256M":        256 << 20,
		"64k":         64 << 10,
		"2 GiB":       2 << 30,
		"1t":          1 << 40,
		"4096B":       4096,
		" 12 MiB  ":   12 << 20,
		"16777215TiB": 16777215 << 40,
		"1073741824":  1 << 30,
	}
	for in, want := range good {
		var b byteSize
		if err := b.Set(in); err != nil || uint64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, uint64(b), err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5GiB", "10 PB", "16777216TiB", "12x"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, uint64(b))
		}
	}
	for v, want := range map[uint64]string{0: "0", 256 << 20: "256MiB", 3 << 30: "3GiB", 1000: "1000", 1536: "1536", 5 << 10: "5KiB"} {
		b := byteSize(v)
		if got := b.String(); got != want {
			t.Errorf("String(%d) = %q, want %q", v, got, want)
		}
	}
}
