package localpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Engine names returned by Server.Engine.
const (
	EnginePostgreSQL = "postgresql"
	EngineCockroach  = "cockroach"
)

// ErrNotInstalled is wrapped by the error FindPostgresBin (and so Start)
// returns when no PostgreSQL server binaries exist on this machine, so that
// callers can tell "not installed" from "installed but broken".
var ErrNotInstalled = errors.New("postgresql server binaries (initdb, postgres) not found: " +
	"install them with `apt-get install postgresql` (or run scripts/ensure-postgres.sh)")

// Bounds on everything that waits on another process.
const (
	readyTimeout  = 30 * time.Second // server start until it accepts connections
	stopTimeout   = 30 * time.Second // clean shutdown before SIGKILL
	staleTimeout  = 10 * time.Second // stale postmaster after SIGQUIT
	killWait      = 5 * time.Second  // after SIGKILL; also exec.Cmd.WaitDelay for the log pipe
	initTimeout   = 2 * time.Minute  // initdb
	startAttempts = 5                // server starts when the port was taken under us
	tailSize      = 8 << 10          // server log bytes kept for error messages
)

// Config says where and how to run the server.
type Config struct {
	// Dir is the PostgreSQL data directory, created if missing and initialized
	// on first use. With CockroachDB (in memory) it only holds the log.
	Dir string
	// Durable keeps fsync and synchronous_commit on (dev). When false they and
	// full_page_writes are off, which is only safe for throwaway test data.
	Durable bool
	// Port is the loopback port to listen on; 0 picks a free one.
	Port int
	// Logger receives lifecycle events; default slog.Default().
	Logger *slog.Logger
	// LogOutput receives the server's own stdout and stderr; default
	// Dir/server.log, appended to.
	LogOutput io.Writer
	// PreferCockroach runs an in-memory `cockroach start-single-node` instead
	// of PostgreSQL when a cockroach binary is on PATH.
	PreferCockroach bool
}

// Server is a running local database server, a child of this process.
type Server struct {
	engine, user, adminDB string
	dataDir               string // checked on connect so a foreign server on our port is not mistaken for ours
	port                  int
	logger                *slog.Logger
	cmd                   *exec.Cmd
	tail                  *tailBuffer
	exited                chan struct{} // closed once cmd.Wait returned
	waitErr               error         // written before exited is closed
	closeLog              func() error
	stopOnce              sync.Once
	stopErr               error
}

// launchSpec is what differs between engines when starting a server.
type launchSpec struct {
	engine, bin, user, adminDB, dataDir string
	args                                func(port int) []string
	env                                 []string
	cred                                *syscall.Credential
	port                                int
	logger                              *slog.Logger
	out                                 io.Writer
	closeLog                            func() error
}

// Start starts a server as described by cfg and returns once it accepts
// connections. The caller must call Stop.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("localpg: config dir is empty")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PreferCockroach {
		if bin, err := exec.LookPath("cockroach"); err == nil {
			return startCockroach(ctx, cfg, bin)
		}
	}
	return startPostgres(ctx, cfg)
}

func startPostgres(ctx context.Context, cfg Config) (*Server, error) {
	binDir, err := FindPostgresBin()
	if err != nil {
		return nil, err
	}
	cred := unprivilegedCredential()
	dir, err := prepareDataDir(cfg.Dir, cred)
	if err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	env := childEnv(dir, cred)
	if err := initCluster(ctx, cfg, binDir, dir, env, cred); err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	if err := stopStale(ctx, dir, cfg.Logger); err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	out, closeLog, err := openLog(cfg, dir)
	if err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	settings := durability(cfg.Durable)
	return launch(ctx, launchSpec{
		engine: EnginePostgreSQL, bin: filepath.Join(binDir, "postgres"),
		user: "postgres", adminDB: "postgres", dataDir: dir, env: env, cred: cred,
		port: cfg.Port, logger: cfg.Logger, out: out, closeLog: closeLog,
		args: func(port int) []string {
			args := []string{"-D", dir,
				"-c", "listen_addresses=127.0.0.1",
				"-c", "port=" + strconv.Itoa(port),
				"-c", "unix_socket_directories=", // no socket lock files to clash or leak
				"-c", "default_transaction_isolation=serializable",
				"-c", "max_connections=200"}
			for _, s := range settings {
				args = append(args, "-c", s)
			}
			return args
		},
	})
}

func durability(durable bool) []string {
	if durable {
		return []string{"fsync=on", "synchronous_commit=on", "full_page_writes=on"}
	}
	return []string{"fsync=off", "synchronous_commit=off", "full_page_writes=off"}
}

func startCockroach(ctx context.Context, cfg Config, bin string) (*Server, error) {
	dir, err := filepath.Abs(cfg.Dir)
	if err == nil {
		err = mkdirs(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("localpg: log dir: %w", err)
	}
	out, closeLog, err := openLog(cfg, dir)
	if err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	return launch(ctx, launchSpec{
		engine: EngineCockroach, bin: bin, user: "root", adminDB: "defaultdb",
		env: os.Environ(), port: cfg.Port, logger: cfg.Logger, out: out, closeLog: closeLog,
		args: func(port int) []string {
			return []string{"start-single-node", "--insecure", "--store=type=mem,size=2GiB",
				"--listen-addr=127.0.0.1:" + strconv.Itoa(port), "--http-addr=127.0.0.1:0"}
		},
	})
}

// Start failures worth another attempt: errPortInUse when we picked the port
// (someone took it between our probe and the server's bind), errTransient
// always (a killed predecessor's backends still hold its shared memory).
var (
	errPortInUse = errors.New("port in use")
	errTransient = errors.New("transient start failure")
)

func launch(ctx context.Context, sp launchSpec) (*Server, error) {
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port := sp.port
		if port == 0 {
			p, err := freePort()
			if err != nil {
				lastErr = err
				break
			}
			port = p
		}
		s, err := startOnce(ctx, sp, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
		retry := errors.Is(err, errTransient) || (sp.port == 0 && errors.Is(err, errPortInUse))
		if !retry || ctx.Err() != nil {
			break
		}
		sp.logger.Warn("localpg: server start failed, retrying", "engine", sp.engine,
			"port", port, "attempt", attempt, "reason", firstLine(err.Error()))
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
	_ = sp.closeLog()
	return nil, fmt.Errorf("localpg: start %s: %w", sp.engine, lastErr)
}

func startOnce(ctx context.Context, sp launchSpec, port int) (*Server, error) {
	s := &Server{engine: sp.engine, user: sp.user, adminDB: sp.adminDB, dataDir: sp.dataDir,
		port: port, logger: sp.logger, tail: &tailBuffer{}, exited: make(chan struct{}),
		closeLog: sp.closeLog}
	cmd := exec.Command(sp.bin, sp.args(port)...)
	w := &logWriter{tail: s.tail, out: sp.out}
	cmd.Stdout, cmd.Stderr, cmd.Env = w, w, sp.env
	cmd.WaitDelay = killWait // backends of a killed postmaster may hold the log pipe open
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: sp.cred,
		// A parent killed without running Stop takes the server with it
		// (SIGQUIT is PostgreSQL's immediate shutdown). The kernel ties this to
		// the starting OS thread, which Go keeps unless it was locked and exited.
		Pdeathsig: syscall.SIGQUIT,
		// Own process group: a terminal Ctrl-C reaches only us, and we call Stop,
		// instead of the server also getting it and shutting down on its own.
		Setpgid: true,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", sp.bin, err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		_ = s.kill()
		return nil, err
	}
	s.logger.Info("localpg: server ready", "engine", s.engine, "pid", cmd.Process.Pid,
		"url", s.URL(s.adminDB), "dir", s.dataDir)
	return s, nil
}

// waitReady polls with a real connection until the server answers, it exits,
// or the bound passes: start-up time varies too much for a fixed sleep.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	delay := 10 * time.Millisecond
	for {
		err := s.ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return s.exitError()
		case <-ctx.Done():
			return fmt.Errorf("%s on port %d not ready: %w (last attempt: %v)\nserver log tail:\n%s",
				s.engine, s.port, ctx.Err(), err, s.tail.String())
		case <-time.After(delay):
		}
		delay = min(2*delay, 250*time.Millisecond)
	}
}

func (s *Server) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL(s.adminDB))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if s.dataDir == "" {
		return conn.Ping(ctx)
	}
	var dir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil {
		return err
	}
	if dir != s.dataDir {
		return fmt.Errorf("port %d is served by another server (data directory %s)", s.port, dir)
	}
	return nil
}

func (s *Server) exitError() error {
	tail := s.tail.String()
	status := s.waitErr
	if status == nil {
		status = errors.New("exit status 0")
	}
	err := fmt.Errorf("%s exited before accepting connections: %w\nserver log tail:\n%s", s.engine, status, tail)
	switch lower := strings.ToLower(tail); {
	case strings.Contains(lower, "address already in use"):
		return fmt.Errorf("%w: %w", errPortInUse, err)
	case strings.Contains(lower, "pre-existing shared memory block"):
		return fmt.Errorf("%w: %w", errTransient, err)
	}
	return err
}

// URL returns a connection URL for database on this server.
func (s *Server) URL(database string) string {
	u := url.URL{Scheme: "postgres", User: url.User(s.user),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path: "/" + database, RawQuery: "sslmode=disable"}
	return u.String()
}

// Engine returns EnginePostgreSQL or EngineCockroach.
func (s *Server) Engine() string { return s.engine }

var databaseName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// CreateDatabase creates database name unless it exists. The name must match
// [a-z0-9_]+ and be at most 63 bytes (PostgreSQL's identifier limit).
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	if !databaseName.MatchString(name) {
		return fmt.Errorf("localpg: invalid database name %q: want [a-z0-9_]+, at most 63 bytes", name)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL(s.adminDB))
	if err != nil {
		return fmt.Errorf("localpg: connect to create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	// PostgreSQL has no CREATE DATABASE IF NOT EXISTS; both engines report an
	// existing database as SQLSTATE 42P04, which also covers concurrent creators.
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") {
		return fmt.Errorf("localpg: create database %s: %w", name, err)
	}
	return nil
}

// Stop shuts the server down: SIGINT (PostgreSQL's fast shutdown, which
// checkpoints; CockroachDB drains), then SIGKILL if it has not exited within
// 30 s or when ctx ends. Calling it again returns the first result.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.stopErr = s.stop(ctx)
		if err := s.closeLog(); err != nil && s.stopErr == nil {
			s.stopErr = fmt.Errorf("localpg: close server log: %w", err)
		}
	})
	return s.stopErr
}

func (s *Server) stop(ctx context.Context) error {
	select {
	case <-s.exited:
		s.logger.Warn("localpg: server had already exited", "engine", s.engine, "status", s.waitErr)
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
		s.logger.Info("localpg: server stopped", "engine", s.engine, "port", s.port)
		return nil
	case <-ctx.Done():
	}
	s.logger.Warn("localpg: server did not stop in time, killing it", "engine", s.engine, "pid", s.cmd.Process.Pid)
	if err := s.kill(); err != nil {
		return err
	}
	return fmt.Errorf("localpg: %s did not shut down cleanly (%w); killed", s.engine, ctx.Err())
}

func (s *Server) kill() error {
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
		return nil
	case <-time.After(killWait + time.Second): // Wait itself gives up on the pipe after killWait
		return fmt.Errorf("localpg: %s (pid %d) still running after SIGKILL", s.engine, s.cmd.Process.Pid)
	}
}
