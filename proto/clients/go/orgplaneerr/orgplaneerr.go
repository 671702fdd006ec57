// Package orgplaneerr reads the machine-readable reason of an error answered by an Orgplane
// service.
//
// Every error an Orgplane service answers carries a google.rpc.Status in the
// `grpc-status-details-bin` trailer. Among its details is one google.rpc.ErrorInfo whose
// domain is "orgplane.dev" and whose reason is the name of one errorsv1.ErrorReason value
// (for example "EMAIL_NOT_VERIFIED"). Reason parses that name into the enum so that callers
// can switch on it:
//
//	_, err := orgs.CreateOrganization(ctx, req)
//	switch orgplaneerr.Reason(err) {
//	case errorsv1.ErrorReason_EMAIL_NOT_VERIFIED:
//		// ask the user to click the link in the verification mail
//	case errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED:
//		// not an Orgplane reason this client knows: act on status.Code(err) alone
//	}
package orgplaneerr

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	errorsv1 "orgplane.dev/clients/go/orgplane/errors/v1"
)

// Domain is the google.rpc.ErrorInfo domain of every Orgplane error.
const Domain = "orgplane.dev"

// Info returns the google.rpc.ErrorInfo of domain "orgplane.dev" carried by err, or nil when
// err is nil, is not a gRPC status error, or carries no such detail. An error wrapped with
// fmt.Errorf("...: %w", err) is unwrapped. Its Metadata holds the reason's parameters (for
// example "capability" with CAPABILITY_REQUIRED).
func Info(err error) *errdetails.ErrorInfo {
	var withStatus interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &withStatus) {
		return nil
	}
	st := withStatus.GRPCStatus()
	if st == nil {
		return nil
	}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info
		}
	}
	return nil
}

// Reason returns the ErrorReason that err carries.
//
// It is ErrorReason_ERROR_REASON_UNSPECIFIED when err is nil, is not a gRPC status error,
// carries no ErrorInfo of domain "orgplane.dev", or names a reason this generated client does
// not know (the server added it after the client was generated). Reasons are only ever added,
// never change meaning, so treat UNSPECIFIED as "decide by status.Code(err) alone"; the raw
// name is still in Info(err).GetReason().
func Reason(err error) errorsv1.ErrorReason {
	info := Info(err)
	if info == nil {
		return errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	if value, ok := errorsv1.ErrorReason_value[info.GetReason()]; ok {
		return errorsv1.ErrorReason(value)
	}
	return errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED
}

// Is reports whether err carries the given Orgplane reason.
func Is(err error, reason errorsv1.ErrorReason) bool {
	return reason != errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED && Reason(err) == reason
}
