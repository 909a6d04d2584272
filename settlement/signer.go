package settlement

import (
	"context"
	"errors"
)

// Signature is a statement signature as Vault Transit formats it, so that
// statements signed in production and in dev read the same way.
type Signature struct {
	// KeyName names the signing key, e.g. "statements" (the Transit key).
	KeyName string
	// KeyVersion is the version of the key that signed, the N of "vault:vN:".
	KeyVersion int
	// Value is the signature, "vault:v<KeyVersion>:<base64>".
	Value string
}

// StatementSigner signs and verifies the canonical bytes of a settlement
// statement. Production uses Vault Transit; dev uses a local key. Both are
// implemented outside this package so that settlement never imports Vault.
//
// Implementations must be safe for concurrent use.
type StatementSigner interface {
	// Sign returns the signature of payload by the current key version.
	Sign(ctx context.Context, payload []byte) (Signature, error)
	// Verify returns nil when sig is a valid signature of payload, an error
	// wrapping ErrBadSignature when it is not, and another error when the
	// check could not be made (the signer is unreachable).
	Verify(ctx context.Context, payload []byte, sig Signature) error
}

// ErrBadSignature is wrapped by StatementSigner.Verify when a signature does
// not match its payload, or names a key the signer does not hold.
var ErrBadSignature = errors.New("settlement: statement signature does not verify")
