package sqlstore

import (
	"context"
	"strings"
)

// Database engines the store runs on.
const (
	EnginePostgreSQL = "postgresql"
	EngineCockroach  = "cockroach"
)

// Engine reports which engine the pool talks to, asking the server once.
func (s *Store) Engine(ctx context.Context) (string, error) {
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	if s.engine != "" {
		return s.engine, nil
	}
	var version string
	if err := s.pool.QueryRow(ctx, `SELECT version()`).Scan(&version); err != nil {
		return "", err
	}
	s.engine = EnginePostgreSQL
	if strings.Contains(version, "CockroachDB") {
		s.engine = EngineCockroach
	}
	return s.engine, nil
}
