// Package gateway is the gRPC transport of Coalition Exchange: the server's TLS and
// interceptors (recover → observe → identity and authorization), the PointsService handlers
// that convert between protobuf and settlement types, the one table that maps domain errors to
// gRPC status codes with google.rpc details, and the HTTP health and metrics endpoints.
//
// It holds no SQL and no business rules: handlers validate through settlement and call the
// Ledger. Generated protobuf types never leave this package.
package gateway
