package localpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FindPostgresBin returns the directory holding initdb and postgres: the one
// of initdb on PATH first, then the newest /usr/lib/postgresql/<ver>/bin,
// which is where Debian's package puts them without touching PATH.
func FindPostgresBin() (dir string, err error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if d, ok := binDirOf(p); ok {
			return d, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	version := func(p string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
		return v
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	for _, m := range matches {
		if d, ok := binDirOf(m); ok {
			return d, nil
		}
	}
	return "", fmt.Errorf("localpg: %w", ErrNotInstalled)
}

// binDirOf returns the directory of initdb if postgres sits next to it, also
// looking through a symlink (e.g. /usr/local/bin/initdb -> .../15/bin/initdb).
func binDirOf(initdb string) (string, bool) {
	candidates := []string{filepath.Dir(initdb)}
	if r, err := filepath.EvalSymlinks(initdb); err == nil {
		candidates = append(candidates, filepath.Dir(r))
	}
	for _, d := range candidates {
		if fi, err := os.Stat(filepath.Join(d, "postgres")); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return d, true
		}
	}
	return "", false
}

// unprivilegedCredential returns the user to run PostgreSQL as, which refuses
// to run as root; nil when we are not root.
func unprivilegedCredential() *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	cred := &syscall.Credential{Uid: 65534, Gid: 65534}
	if u, err := user.Lookup("nobody"); err == nil {
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 == nil && err2 == nil {
			cred.Uid, cred.Gid = uint32(uid), uint32(gid)
		}
	}
	return cred
}

// prepareDataDir creates dir (parents 0755 so the server user can reach it),
// makes it 0700 as PostgreSQL demands and, as root, hands it to cred's user.
// It returns the absolute path with symlinks resolved.
func prepareDataDir(dir string, cred *syscall.Credential) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	if err := mkdirs(abs); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	if err := os.Chmod(real, 0o700); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	if cred == nil {
		return real, nil
	}
	if err := checkTraversable(filepath.Dir(real), cred); err != nil {
		return "", err
	}
	// A server of a killed predecessor may still be removing files (postmaster.pid) while
	// we walk: a file that vanished needs no owner.
	err = filepath.WalkDir(real, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			err = os.Lchown(p, int(cred.Uid), int(cred.Gid))
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("hand data dir to uid %d: %w", cred.Uid, err)
	}
	return real, nil
}

// mkdirs is os.MkdirAll, except that every directory it creates ends up 0755
// whatever the umask, so that an unprivileged server can traverse them.
func mkdirs(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		_, err := os.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := os.Chmod(missing[i], 0o755); err != nil {
			return err
		}
	}
	return nil
}

// checkTraversable reports the first of dir and its parents that cred's user
// cannot enter, rather than letting postgres fail later with a vaguer error.
func checkTraversable(dir string, cred *syscall.Credential) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("data dir parent: %w", err)
		}
		bit := fs.FileMode(0o001)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == cred.Uid {
			bit = 0o100
		} else if ok && st.Gid == cred.Gid {
			bit = 0o010
		}
		if fi.Mode().Perm()&bit == 0 {
			return fmt.Errorf("directory %s is not traversable by uid %d, which postgres runs as "+
				"because we are root: chmod o+x it or put the data dir elsewhere", d, cred.Uid)
		}
		if filepath.Dir(d) == d {
			return nil
		}
	}
}

// childEnv pins the locale (initdb and the server otherwise follow ours) and,
// for the unprivileged user, a HOME it can use.
func childEnv(dir string, cred *syscall.Credential) []string {
	env := append(os.Environ(), "LC_ALL=C")
	if cred != nil {
		env = append(env, "HOME="+dir)
	}
	return env
}

// initCluster runs initdb unless dir already holds a cluster.
func initCluster(ctx context.Context, cfg Config, binDir, dir string, env []string, cred *syscall.Credential) error {
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return nil
	}
	args := []string{"-D", dir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"}
	if !cfg.Durable {
		args = append(args, "--no-sync") // throwaway test clusters: syncing costs seconds per package
	}
	ctx, cancel := context.WithTimeout(ctx, initTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), args...)
	cmd.Env, cmd.WaitDelay = env, killWait
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", dir, err, lastBytes(out, tailSize))
	}
	cfg.Logger.Info("localpg: initialized postgresql cluster", "dir", dir)
	return nil
}

// stopStale stops a postmaster that a killed parent left running on dir
// (its parent-death signal can be lost, e.g. if the parent thread exited
// first). A dead pid needs nothing: postgres replaces a stale pid file itself.
func stopStale(ctx context.Context, dir string, logger *slog.Logger) error {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read stale pid file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 || !isLivePostgres(pid) {
		logger.Info("localpg: found stale postmaster.pid of a dead server; postgres will replace it", "dir", dir)
		return nil
	}
	logger.Warn("localpg: stopping postgres left running by a previous run", "pid", pid, "dir", dir)
	if signalAndWait(ctx, pid, syscall.SIGQUIT, staleTimeout) {
		return nil
	}
	logger.Warn("localpg: stale postgres ignored SIGQUIT, killing it", "pid", pid)
	if signalAndWait(ctx, pid, syscall.SIGKILL, killWait) {
		return nil
	}
	return fmt.Errorf("stale postgres (pid %d) on %s still running after SIGKILL", pid, dir)
}

// isLivePostgres reports whether pid is a running (not zombie) postgres, so
// that a recycled pid of some other program is never signalled.
func isLivePostgres(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Format: "pid (comm) state ...".
	open, end := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
	if open < 0 || end < open || end+2 >= len(b) {
		return false
	}
	comm := string(b[open+1 : end])
	return (comm == "postgres" || comm == "postmaster") && b[end+2] != 'Z'
}

// signalAndWait sends sig to pid and reports whether it is gone within bound.
func signalAndWait(ctx context.Context, pid int, sig syscall.Signal, bound time.Duration) bool {
	_ = syscall.Kill(pid, sig)
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for isLivePostgres(pid) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// openLog returns where the server's output goes and how to close it.
func openLog(cfg Config, dir string) (io.Writer, func() error, error) {
	if cfg.LogOutput != nil {
		return cfg.LogOutput, func() error { return nil }, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, "server.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open server log: %w", err)
	}
	var once sync.Once
	return f, func() (err error) { once.Do(func() { err = f.Close() }); return err }, nil
}

// logWriter copies server output to the configured log and keeps its tail for
// error messages. Errors from the log are dropped: failing the write would
// stop exec's copier and block the server on a full pipe.
type logWriter struct {
	tail *tailBuffer
	out  io.Writer
}

func (w *logWriter) Write(p []byte) (int, error) {
	_, _ = w.tail.Write(p)
	_, _ = w.out.Write(p)
	return len(p), nil
}

// tailBuffer keeps the last tailSize bytes written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = lastBytes(append(t.b, p...), tailSize)
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func lastBytes(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return append(b[:0:0], b[len(b)-n:]...)
}

// freePort returns a loopback port that was free a moment ago; launch retries
// when the server loses the race for it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
