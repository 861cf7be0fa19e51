package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// conformanceImages are the images that the upstream e2e suite's specs run, under the names in listPath (the
// output of e2e.test --list-images with make conformance's registry list), built from what this machine has:
//   - agnhost: the suite's own test server (built by hack/build-k8s.sh) on busybox, with the host's curl,
//     dig, ip, bash, netcat-openbsd's nc and dash as /bin/sh (with their libraries; Debian's busybox sh runs
//     its own applets before programs on the PATH, so its nc would shadow netcat's), and the image's user
//     and group that security specs look for;
//   - busybox: Debian's busybox-static, as for the project's own tests, with bash as /bin/sh (see bashAsSh);
//   - pause: the project's pause;
//   - nonewprivs: the suite's nnp program, setuid, on busybox;
//   - nonroot: busybox whose default user is 1234, as the upstream image;
//   - kitten, nautilus: agnhost serving test-webserver, as upstream (without their pictures);
//   - glibc-dns-testing: Debian bookworm's sh (dash), hostname, dig, nslookup and getent with glibc, from this
//     machine (Debian bookworm too), on busybox;
//   - nginx: a stand-in, busybox httpd serving a page on port 80 (docs/CONFORMANCE.md names it).
//
// Any other name is listed on stderr as not built; specs that use it fail with ErrImageNeverPull or
// ErrImagePull from a loopback registry, and the report shows them.
func conformanceImages(ctx context.Context, listPath, k8sBin, k8sSrc, out, busyboxPath string) ([]image, error) {
	list, err := os.ReadFile(listPath)
	if err != nil {
		return nil, err
	}
	pauseBin, err := goBuild(ctx, out, "./test/images/pause")
	if err != nil {
		return nil, err
	}
	busybox, err := busyboxLayer(ctx, busyboxPath)
	if err != nil {
		return nil, err
	}
	pause, err := fileLayer(map[string]string{"/pause": pauseBin})
	if err != nil {
		return nil, err
	}
	agnhost, err := agnhostLayer(filepath.Join(k8sBin, "agnhost"), filepath.Join(k8sSrc, "test/images/agnhost/porter"))
	if err != nil {
		return nil, err
	}
	tools, err := hostToolsLayer(ctx, []string{"curl", "dig", "ip", "bash", "nc", "sh"}, nil)
	if err != nil {
		return nil, err
	}
	// Debian's busybox 1.35 sh drops environment variables whose names are not shell identifiers (data-1)
	// before it runs a program; upstream's busybox 1.37 sh keeps them, and the ConfigMap and Secret env specs
	// look for them. bash, as sh, keeps them too.
	bashAsSh, err := hostToolsLayer(ctx, []string{"bash"}, map[string]string{"bin/sh": "bash"})
	if err != nil {
		return nil, err
	}
	// glibc-dns-testing is Debian bookworm with dnsutils upstream: this machine's glibc programs are the same.
	glibc, err := hostToolsLayer(ctx, []string{"sh", "hostname", "dig", "nslookup", "getent"}, nil)
	if err != nil {
		return nil, err
	}
	nsswitch, err := contentLayer(map[string][]byte{"etc/nsswitch.conf": []byte("hosts: files dns\n")}, 0o644)
	if err != nil {
		return nil, err
	}
	nnp, err := nnpLayer(filepath.Join(k8sBin, "nnp"))
	if err != nil {
		return nil, err
	}
	nginx, err := contentLayer(map[string][]byte{"usr/share/nginx/html/index.html": []byte("<h1>Welcome to nginx!</h1>\n")}, 0o644)
	if err != nil {
		return nil, err
	}
	agnhostConfig := v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}}
	var images []image
	for _, name := range strings.Fields(string(list)) {
		repo, _, _ := strings.Cut(name, ":")
		switch path.Base(repo) {
		case "agnhost":
			images = append(images, image{name, []v1.Layer{busybox, tools, agnhost}, agnhostConfig})
		case "busybox":
			images = append(images, image{name, []v1.Layer{busybox, bashAsSh}, v1.Config{Cmd: []string{"sh"}}})
		case "pause":
			images = append(images, image{name, []v1.Layer{pause}, v1.Config{Entrypoint: []string{"/pause"}}})
		case "nonewprivs":
			images = append(images, image{name, []v1.Layer{busybox, nnp}, v1.Config{Cmd: []string{"nnp"}}})
		case "nonroot":
			images = append(images, image{name, []v1.Layer{busybox}, v1.Config{Cmd: []string{"sh"}, User: "1234"}})
		case "kitten", "nautilus":
			images = append(images, image{name, []v1.Layer{busybox, agnhost},
				v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"test-webserver"}}})
		case "glibc-dns-testing":
			images = append(images, image{name, []v1.Layer{busybox, glibc, nsswitch}, v1.Config{Cmd: []string{"sh"}}})
		case "nginx":
			images = append(images, image{name, []v1.Layer{busybox, nginx},
				v1.Config{Cmd: []string{"httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"}}})
		default:
			fmt.Fprintf(os.Stderr, "imagebuild: not built (no local source): %s\n", name)
		}
	}
	return images, nil
}

// agnhostLayer holds /agnhost and its /agnhost-2 link, the /uploads directory, the serving certificate the
// suite's HTTPS specs start netexec with (/localhost.crt and .key, from the module's porter directory), and
// the user and group that the upstream image defines (user-defined-in-image, uid 1000, in
// group-defined-in-image, gid 50000).
func agnhostLayer(agnhostPath, porterDir string) (v1.Layer, error) {
	bin, err := os.ReadFile(agnhostPath)
	if err != nil {
		return nil, fmt.Errorf("agnhost (built by hack/build-k8s.sh agnhost): %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := writeTarFile(tw, "agnhost", bin, 0o755); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "agnhost-2", Linkname: "agnhost", Mode: 0o777}); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "uploads/", Mode: 0o755}); err != nil {
		return nil, err
	}
	for _, name := range []string{"localhost.crt", "localhost.key"} {
		data, err := os.ReadFile(filepath.Join(porterDir, name))
		if err != nil {
			return nil, fmt.Errorf("agnhost's certificate (from the k8s.io/kubernetes module): %w", err)
		}
		if err := writeTarFile(tw, name, data, 0o644); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"etc/passwd": busyboxPasswd + "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n",
		"etc/group":  busyboxGroup + "user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n",
	}
	for _, n := range []string{"etc/passwd", "etc/group"} {
		if err := writeTarFile(tw, n, []byte(files[n]), 0o644); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return layerFromBytes(buf.Bytes())
}

// nnpLayer holds the suite's nnp program setuid and setgid root, as the upstream nonewprivs image.
func nnpLayer(nnpPath string) (v1.Layer, error) {
	bin, err := os.ReadFile(nnpPath)
	if err != nil {
		return nil, fmt.Errorf("nnp (built by hack/build-k8s.sh nnp): %w", err)
	}
	return contentLayer(map[string][]byte{"usr/local/bin/nnp": bin}, 0o6755)
}

// hostToolsLayer holds host programs with every shared library ldd names for them, at the paths it names, so
// they run in an image without the host's root: the upstream agnhost image has curl, dig, ip, bash and nc, which
// the suite's specs run in it (lifecycle hooks curl, network specs dial with curl).
// aliases puts a program under another name too (image path → program).
func hostToolsLayer(ctx context.Context, programs []string, aliases map[string]string) (v1.Layer, error) {
	files := map[string][]byte{}
	for _, program := range programs {
		path, err := exec.LookPath(program)
		if err != nil {
			return nil, fmt.Errorf("%s (needed in the agnhost image): %w", program, err)
		}
		out, err := exec.CommandContext(ctx, "ldd", path).Output()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", path, err)
		}
		needed := []string{path}
		for _, line := range strings.Split(string(out), "\n") {
			for _, field := range strings.Fields(line) {
				if strings.HasPrefix(field, "/") {
					needed = append(needed, field)
				}
			}
		}
		for _, file := range needed {
			data, err := os.ReadFile(file) // follows links: the image gets the library under the name it is asked by
			if err != nil {
				return nil, err
			}
			files[strings.TrimPrefix(file, "/")] = data
		}
		files["bin/"+program] = files[strings.TrimPrefix(path, "/")] // scripts name /bin/bash
		for alias, target := range aliases {
			if target == program {
				files[alias] = files[strings.TrimPrefix(path, "/")]
			}
		}
	}
	return contentLayer(files, 0o755)
}
