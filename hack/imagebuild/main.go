// Command imagebuild builds the container images that nodeagent's tests and demo use, without a registry:
// localhost/pause from test/images/pause, localhost/busybox from the host's busybox-static, and
// localhost/testserver (busybox plus test/images/testserver), and with --metrics-server BIN
// localhost/metrics-server (busybox plus that binary, built from its module by hack/test.sh). It writes each
// as an image tarball and imports it into containerd's k8s.io namespace with ctr.
//
// With --conformance-images it builds instead the images that the upstream e2e suite's specs use (make
// conformance): see conformance.go.
//
// Run it from the repository root: go run ./hack/imagebuild [--out DIR] [--no-import]
//
//	[--conformance-images LIST --k8s-bin DIR --k8s-src DIR]
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The tags tests refer to; ":local" keeps kubelet's default pull policy for them at IfNotPresent.
const (
	PauseImage      = "localhost/pause:local"
	BusyboxImage    = "localhost/busybox:local"
	TestserverImage = "localhost/testserver:local"
	// MetricsServerImage is metrics-server for the e2e test of kubectl top.
	MetricsServerImage = "localhost/metrics-server:local"
)

func main() {
	out := flag.String("out", filepath.Join(os.TempDir(), "nodeagent-images"), "directory for the image tarballs")
	busybox := flag.String("busybox", "/bin/busybox", "a static busybox binary")
	address := flag.String("containerd-address", "/run/containerd/containerd.sock", "containerd socket to import into")
	noImport := flag.Bool("no-import", false, "only write the tarballs")
	metricsServer := flag.String("metrics-server", "", "a metrics-server binary: build "+MetricsServerImage+" too")
	conformanceList := flag.String("conformance-images", "", "a file listing the images of e2e.test --list-images, one a line: build those")
	k8sBin := flag.String("k8s-bin", "", "with --conformance-images: where hack/build-k8s.sh put agnhost and nnp")
	k8sSrc := flag.String("k8s-src", "", "with --conformance-images: the k8s.io/kubernetes module's directory")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := func() ([]image, error) { return testImages(ctx, *out, *busybox, *metricsServer) }
	if *conformanceList != "" {
		build = func() ([]image, error) {
			return conformanceImages(ctx, *conformanceList, *k8sBin, *k8sSrc, *out, *busybox)
		}
	}
	if err := run(ctx, *out, *address, !*noImport, build); err != nil {
		fmt.Fprintf(os.Stderr, "imagebuild: %v\n", err)
		os.Exit(1)
	}
}

// image is one image to write: its name, its layers (the first at the bottom) and its run configuration.
type image struct {
	tag    string
	layers []v1.Layer
	config v1.Config
}

func run(ctx context.Context, out, address string, doImport bool, build func() ([]image, error)) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	images, err := build()
	if err != nil {
		return err
	}
	for _, im := range images {
		path := filepath.Join(out, strings.NewReplacer("/", "_", ":", "_").Replace(im.tag)+".tar")
		if err := writeImage(path, im.tag, im.layers, im.config); err != nil {
			return fmt.Errorf("image %s: %w", im.tag, err)
		}
		fmt.Fprintf(os.Stderr, "imagebuild: wrote %s (%s)\n", im.tag, path)
		if !doImport {
			continue
		}
		cmd := exec.CommandContext(ctx, "ctr", "--address", address, "-n", "k8s.io", "images", "import", path)
		if outText, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ctr import %s: %w: %s", im.tag, err, outText)
		}
		fmt.Fprintf(os.Stderr, "imagebuild: imported %s into containerd\n", im.tag)
	}
	return nil
}

// testImages are the project's own test and demo images.
func testImages(ctx context.Context, out, busyboxPath, metricsServerBin string) ([]image, error) {
	pauseBin, err := goBuild(ctx, out, "./test/images/pause")
	if err != nil {
		return nil, err
	}
	serverBin, err := goBuild(ctx, out, "./test/images/testserver")
	if err != nil {
		return nil, err
	}
	busyboxLayer, err := busyboxLayer(ctx, busyboxPath)
	if err != nil {
		return nil, err
	}
	pauseLayer, err := fileLayer(map[string]string{"/pause": pauseBin})
	if err != nil {
		return nil, err
	}
	serverLayer, err := fileLayer(map[string]string{"/testserver": serverBin})
	if err != nil {
		return nil, err
	}

	images := []image{
		{PauseImage, []v1.Layer{pauseLayer}, v1.Config{Entrypoint: []string{"/pause"}}},
		{BusyboxImage, []v1.Layer{busyboxLayer}, v1.Config{Cmd: []string{"sh"}}},
		{TestserverImage, []v1.Layer{busyboxLayer, serverLayer}, v1.Config{Entrypoint: []string{"/testserver"}}},
	}
	if metricsServerBin != "" {
		metricsServerLayer, err := fileLayer(map[string]string{"/metrics-server": metricsServerBin})
		if err != nil {
			return nil, err
		}
		images = append(images, image{MetricsServerImage, []v1.Layer{busyboxLayer, metricsServerLayer},
			v1.Config{Entrypoint: []string{"/metrics-server"}}})
	}
	return images, nil
}

// goBuild compiles a static binary of pkg into dir and returns its path.
func goBuild(ctx context.Context, dir, pkg string) (string, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", pkg, err, out)
	}
	return bin, nil
}

// The users and groups of the busybox layer.
const (
	busyboxPasswd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
	busyboxGroup  = "root:x:0:\nnobody:x:65534:\n"
)

// busyboxLayer holds busybox with a link for each applet, a passwd/group with root and nobody, and /tmp.
func busyboxLayer(ctx context.Context, busyboxPath string) (v1.Layer, error) {
	list, err := exec.CommandContext(ctx, busyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list (is busybox-static installed?): %w", busyboxPath, err)
	}
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []string{"bin/", "etc/", "root/", "var/", "usr/", "usr/bin/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}); err != nil {
		return nil, err
	}
	files := map[string]string{"etc/passwd": busyboxPasswd, "etc/group": busyboxGroup, "bin/busybox": string(bin)}
	for _, n := range []string{"etc/passwd", "etc/group", "bin/busybox"} {
		if err := writeTarFile(tw, n, []byte(files[n]), 0o755); err != nil {
			return nil, err
		}
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		hdr := &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return layerFromBytes(buf.Bytes())
}

// fileLayer holds the given host files at the given image paths, executable.
func fileLayer(files map[string]string) (v1.Layer, error) {
	contents := map[string][]byte{}
	for dest, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		contents[strings.TrimPrefix(dest, "/")] = data
	}
	return contentLayer(contents, 0o755)
}

// contentLayer holds files with the given contents and mode.
func contentLayer(files map[string][]byte, mode int64) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		if err := writeTarFile(tw, name, content, mode); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return layerFromBytes(buf.Bytes())
}

func writeTarFile(tw *tar.Writer, name string, data []byte, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func layerFromBytes(data []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

func writeImage(path, tag string, layers []v1.Layer, config v1.Config) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = runtime.GOARCH
	cfg.Config = config
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, ref, img)
}
