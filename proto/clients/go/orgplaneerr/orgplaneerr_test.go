package orgplaneerr

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	errorsv1 "orgplane.dev/clients/go/orgplane/errors/v1"
)

func withInfo(t *testing.T, code codes.Code, reason, domain string) error {
	t.Helper()
	st, err := status.New(code, "refused").WithDetails(
		&errdetails.BadRequest{},
		&errdetails.ErrorInfo{Reason: reason, Domain: domain, Metadata: map[string]string{"k": "v"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestReasonReadsTheNamedValue(t *testing.T) {
	err := withInfo(t, codes.FailedPrecondition, "EMAIL_NOT_VERIFIED", "orgplane.dev")
	if got := Reason(err); got != errorsv1.ErrorReason_EMAIL_NOT_VERIFIED {
		t.Fatalf("Reason = %v", got)
	}
	if !Is(err, errorsv1.ErrorReason_EMAIL_NOT_VERIFIED) || Is(err, errorsv1.ErrorReason_NOT_FOUND) {
		t.Fatal("Is disagrees with Reason")
	}
	if got := Reason(fmt.Errorf("creating: %w", err)); got != errorsv1.ErrorReason_EMAIL_NOT_VERIFIED {
		t.Fatalf("Reason of a wrapped error = %v", got)
	}
	if Info(err).GetMetadata()["k"] != "v" {
		t.Fatalf("Info = %v", Info(err))
	}
}

func TestEveryReasonRoundTrips(t *testing.T) {
	for value, name := range errorsv1.ErrorReason_name {
		if value == 0 {
			continue
		}
		if got := Reason(withInfo(t, codes.Internal, name, Domain)); int32(got) != value {
			t.Fatalf("%s read as %v", name, got)
		}
	}
}

func TestUnspecifiedWhenNoOrgplaneReason(t *testing.T) {
	for name, err := range map[string]error{
		"nil":            nil,
		"not a status":   errors.New("boom"),
		"no details":     status.Error(codes.NotFound, "gone"),
		"unknown reason": withInfo(t, codes.Internal, "A_REASON_FROM_THE_FUTURE", Domain),
		"other domain":   withInfo(t, codes.Internal, "EMAIL_NOT_VERIFIED", "googleapis.com"),
	} {
		if got := Reason(err); got != errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			t.Errorf("%s: Reason = %v", name, got)
		}
		if Is(err, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED) {
			t.Errorf("%s: Is(UNSPECIFIED) is true", name)
		}
	}
	if Info(withInfo(t, codes.Internal, "A_REASON_FROM_THE_FUTURE", Domain)).GetReason() != "A_REASON_FROM_THE_FUTURE" {
		t.Error("Info hides the unknown reason's name")
	}
}
