package gateway

import (
	"encoding/base64"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

var kindToProto = map[settlement.Kind]coalitionv1.TransactionKind{
	settlement.KindAward:         coalitionv1.TransactionKind_TRANSACTION_KIND_AWARD,
	settlement.KindRedeem:        coalitionv1.TransactionKind_TRANSACTION_KIND_REDEEM,
	settlement.KindAuthorize:     coalitionv1.TransactionKind_TRANSACTION_KIND_AUTHORIZE,
	settlement.KindCapture:       coalitionv1.TransactionKind_TRANSACTION_KIND_CAPTURE,
	settlement.KindRelease:       coalitionv1.TransactionKind_TRANSACTION_KIND_RELEASE,
	settlement.KindReversal:      coalitionv1.TransactionKind_TRANSACTION_KIND_REVERSAL,
	settlement.KindBonus:         coalitionv1.TransactionKind_TRANSACTION_KIND_BONUS,
	settlement.KindBonusReversal: coalitionv1.TransactionKind_TRANSACTION_KIND_BONUS_REVERSAL,
	settlement.KindExpiry:        coalitionv1.TransactionKind_TRANSACTION_KIND_EXPIRY,
}

var statusToProto = map[settlement.TxnStatus]coalitionv1.TransactionStatus{
	settlement.StatusPosted:            coalitionv1.TransactionStatus_TRANSACTION_STATUS_POSTED,
	settlement.StatusPartiallyReversed: coalitionv1.TransactionStatus_TRANSACTION_STATUS_PARTIALLY_REVERSED,
	settlement.StatusReversed:          coalitionv1.TransactionStatus_TRANSACTION_STATUS_REVERSED,
}

var holdStatusToProto = map[settlement.HoldStatus]coalitionv1.HoldStatus{
	settlement.HoldOpen:     coalitionv1.HoldStatus_HOLD_STATUS_OPEN,
	settlement.HoldCaptured: coalitionv1.HoldStatus_HOLD_STATUS_CAPTURED,
	settlement.HoldVoided:   coalitionv1.HoldStatus_HOLD_STATUS_VOIDED,
	settlement.HoldExpired:  coalitionv1.HoldStatus_HOLD_STATUS_EXPIRED,
}

func transactionToProto(t settlement.Transaction) *coalitionv1.Transaction {
	return &coalitionv1.Transaction{
		Id:             t.ID,
		PartnerId:      t.PartnerID,
		MemberId:       t.MemberID,
		Kind:           kindToProto[t.Kind],
		Points:         t.Points,
		Reference:      t.Reference,
		Status:         statusToProto[t.Status()],
		ReversesId:     t.ReversesID,
		CreatedAt:      timestamppb.New(t.CreatedAt),
		HoldId:         t.HoldID,
		ReversedPoints: t.ReversedPoints,
	}
}

func balanceToProto(b settlement.Balance) *coalitionv1.Balance {
	return &coalitionv1.Balance{MemberId: b.MemberID, Posted: b.Posted, Held: b.Held, Available: b.Available(), ExpiringSoon: b.ExpiringSoon}
}

func holdToProto(h *settlement.Hold) *coalitionv1.Hold {
	if h == nil {
		return nil
	}
	return &coalitionv1.Hold{
		Id:             h.ID,
		MemberId:       h.MemberID,
		Points:         h.Points,
		CapturedPoints: h.CapturedPoints,
		Status:         holdStatusToProto[h.Status],
		ExpiresAt:      timestamppb.New(h.ExpiresAt),
	}
}

// timeOrZero converts an optional timestamp; an absent one is the zero time. An invalid one
// becomes a far-future time that validation rejects, rather than silently "now".
func timeOrZero(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		return time.Unix(1<<40, 0)
	}
	return ts.AsTime()
}

// pageTokenIDPattern is a UUID as the database prints it. A forged token's id reaches SQL, so
// it is checked here: malformed, it is the caller's INVALID_ARGUMENT, not our INTERNAL.
var pageTokenIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Page tokens are opaque to clients: base64url("<created_at RFC3339Nano>|<id>").
func encodePageToken(p *settlement.Page) string {
	if p == nil {
		return ""
	}
	raw := p.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + p.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodePageToken(token string) (*settlement.Page, error) {
	if token == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, settlement.ErrInvalidPageToken
	}
	at, id, ok := strings.Cut(string(raw), "|")
	t, err := time.Parse(time.RFC3339Nano, at)
	if !ok || err != nil || !pageTokenIDPattern.MatchString(id) {
		return nil, settlement.ErrInvalidPageToken
	}
	return &settlement.Page{CreatedAt: t, ID: id}, nil
}
