package podmanager

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func readLink(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("reading %s through its link: %v", name, err)
	}
	return string(data)
}

func TestWriteAtomicallySwapsTheWholeSet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	err := writeAtomically(dir, map[string]projectedFile{
		"a":        {data: []byte("one"), mode: 0o644},
		"sub/b":    {data: []byte("two"), mode: 0o400},
		"obsolete": {data: []byte("x"), mode: 0o644},
	}, -1)
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatalf("no ..data symlink: %v", err)
	}
	if link, _ := os.Readlink(filepath.Join(dir, "a")); link != "..data/a" {
		t.Errorf("a links to %q, want ..data/a", link)
	}
	if readLink(t, dir, "sub/b") != "two" {
		t.Error("sub/b has the wrong content")
	}
	if info, _ := os.Stat(filepath.Join(dir, "sub/b")); info.Mode().Perm() != 0o400 {
		t.Errorf("sub/b mode = %v, want 0400", info.Mode().Perm())
	}

	// The same content again changes nothing.
	if err := writeAtomically(dir, map[string]projectedFile{
		"a": {data: []byte("one"), mode: 0o644}, "sub/b": {data: []byte("two"), mode: 0o400},
		"obsolete": {data: []byte("x"), mode: 0o644},
	}, -1); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Readlink(filepath.Join(dir, "..data")); again != first {
		t.Errorf("unchanged content was rewritten: %s -> %s", first, again)
	}

	// New content: one swap; the old generation and vanished keys are gone.
	if err := writeAtomically(dir, map[string]projectedFile{"a": {data: []byte("uno"), mode: 0o644}}, -1); err != nil {
		t.Fatal(err)
	}
	if readLink(t, dir, "a") != "uno" {
		t.Error("a was not updated")
	}
	for _, gone := range []string{"obsolete", "sub", first} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s still present after the update", gone)
		}
	}
}

// With a group, every file, directory and link of the volume is the group's, directories setgid.
func TestWriteAtomicallyGivesTheVolumeToAGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files to another group needs root")
	}
	dir := filepath.Join(t.TempDir(), "vol")
	if err := writeAtomically(dir, map[string]projectedFile{"sub/key": {data: []byte("s3cret"), mode: 0o440}}, 4242); err != nil {
		t.Fatal(err)
	}
	data, _ := os.Readlink(filepath.Join(dir, "..data"))
	for _, name := range []string{".", "sub", "..data", data, data + "/sub", data + "/sub/key"} {
		info, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if gid := info.Sys().(*syscall.Stat_t).Gid; gid != 4242 {
			t.Errorf("%s has group %d, want 4242", name, gid)
		}
		if info.IsDir() && info.Mode()&os.ModeSetgid == 0 {
			t.Errorf("directory %s is not setgid: %v", name, info.Mode())
		}
	}
	if info, _ := os.Stat(filepath.Join(dir, "sub/key")); info.Mode().Perm() != 0o440 {
		t.Errorf("sub/key mode = %v, want 0440", info.Mode().Perm())
	}
}

func TestCheckHostPathTypes(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	typ := func(ty corev1.HostPathType) *corev1.HostPathType { return &ty }
	tests := []struct {
		path  string
		typ   *corev1.HostPathType
		valid bool
	}{
		{filepath.Join(base, "anything"), nil, true},
		{filepath.Join(base, "new/dir"), typ(corev1.HostPathDirectoryOrCreate), true},
		{filepath.Join(base, "new/file"), typ(corev1.HostPathFileOrCreate), true},
		{base, typ(corev1.HostPathDirectory), true},
		{file, typ(corev1.HostPathDirectory), false},
		{filepath.Join(base, "missing"), typ(corev1.HostPathDirectory), false},
		{file, typ(corev1.HostPathFile), true},
		{base, typ(corev1.HostPathFile), false},
		{file, typ(corev1.HostPathSocket), false},
		{"/dev/null", typ(corev1.HostPathCharDev), true},
		{file, typ(corev1.HostPathBlockDev), false},
	}
	for _, tt := range tests {
		err := checkHostPath(&corev1.HostPathVolumeSource{Path: tt.path, Type: tt.typ})
		if (err == nil) != tt.valid {
			t.Errorf("%s as %v: err = %v, want valid %v", tt.path, tt.typ, err, tt.valid)
		}
	}
	if info, err := os.Stat(filepath.Join(base, "new/dir")); err != nil || !info.IsDir() {
		t.Error("DirectoryOrCreate did not create the directory")
	}
	if info, err := os.Stat(filepath.Join(base, "new/file")); err != nil || !info.Mode().IsRegular() {
		t.Error("FileOrCreate did not create the file")
	}
}

func TestVolumeMountsUseSubPathAndReadOnly(t *testing.T) {
	c := &corev1.Container{VolumeMounts: []corev1.VolumeMount{
		{Name: "data", MountPath: "/data", SubPath: "app"},
		{Name: "cfg", MountPath: "/etc/app"},
		{Name: "token", MountPath: "/var/run/secrets"},
	}}
	data := t.TempDir()
	mounts, err := volumeMounts(c, map[string]hostVolume{
		"data": {path: data}, "cfg": {path: "/host/cfg", readOnly: true},
	}, nil)
	if err != nil || len(mounts) != 2 {
		t.Fatalf("mounts = %v, %v; want the two set-up volumes", mounts, err)
	}
	if mounts[0].HostPath != filepath.Join(data, "app") || mounts[0].Readonly || !strings.HasPrefix(mounts[0].ContainerPath, "/data") {
		t.Errorf("subPath mount = %+v", mounts[0])
	}
	if !mounts[1].Readonly {
		t.Errorf("configMap-like volume mounted read-write: %+v", mounts[1])
	}
}

// subPathExpr is expanded with the container's environment; the result, as a subPath, may not leave the
// volume, and a missing subdirectory is created with the volume's mode, as the kubelet does.
func TestSubPathExpr(t *testing.T) {
	volume := t.TempDir()
	// An fsGroup tmpfs volume's root: setgid, and tmpfs's sticky bit.
	volumeMode := 0o777 | os.ModeSetgid | os.ModeSticky
	if err := os.Chmod(volume, volumeMode); err != nil {
		t.Fatal(err)
	}
	volumes := map[string]hostVolume{"work": {path: volume}}
	env := map[string]string{"POD_NAME": "web-1", "UP": "..", "ABS": "/etc", "EMPTY": ""}
	for _, tc := range []struct {
		expr, wantHost, wantErr string
	}{
		{expr: "logs/$(POD_NAME)", wantHost: filepath.Join(volume, "logs/web-1")},
		{expr: "$(UP)", wantErr: "unable to provision SubPath `..`: must not contain '..'"},
		{expr: "$(ABS)", wantErr: "error SubPath `/etc` must not be an absolute path"},
		{expr: "$(EMPTY)/$(NOPE)", wantErr: "missing value for EMPTY, NOPE"},
	} {
		c := &corev1.Container{VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/data", SubPathExpr: tc.expr}}}
		mounts, err := volumeMounts(c, volumes, env)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%s: error %v, want %q", tc.expr, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(mounts) != 1 || mounts[0].HostPath != tc.wantHost {
			t.Fatalf("%s: mounts %v, %v; want %s", tc.expr, mounts, err, tc.wantHost)
		}
		if st, err := os.Stat(tc.wantHost); err != nil || st.Mode()&^os.ModeDir != volumeMode {
			t.Errorf("%s: subPath directory %v, %v; want it created with the volume's mode %v", tc.expr, st, err, volumeMode)
		}
	}
}
