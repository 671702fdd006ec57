// Command story drives a running Orgplane through the generated Go client
// (orgplane.dev/clients/go): a business owner signs up, is refused an organization before
// verifying (reason read as errorsv1.ErrorReason_EMAIL_NOT_VERIFIED), verifies by the mailed
// link, creates an organization, invites a developer who signs up, verifies, and accepts with
// the mailed invite, creates a workspace, and checks the developer's access.
//
// Environment: ORGPLANE_ADDR (host:port of `orgplane all`) and ORGPLANE_MAIL_DIR (where the
// .eml files land). Run by tests/clients/go.sh.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	billingv1 "orgplane.dev/clients/go/orgplane/billing/v1"
	errorsv1 "orgplane.dev/clients/go/orgplane/errors/v1"
	identityv1 "orgplane.dev/clients/go/orgplane/identity/v1"
	organizationv1 "orgplane.dev/clients/go/orgplane/organization/v1"
	workspacev1 "orgplane.dev/clients/go/orgplane/workspace/v1"
	"orgplane.dev/clients/go/orgplaneerr"
)

const password = "correct horse battery staple"

var (
	mailDir = os.Getenv("ORGPLANE_MAIL_DIR")
	run     = randomHex(4) // unique addresses, so the story also runs against a used server
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func email(name string) string { return fmt.Sprintf("%s.%s@example.com", name, run) }

// bearer attaches `authorization: Bearer <token>` to the outgoing call.
func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// mailed returns the first group of pattern in the newest mail whose To: names `to`.
func mailed(to, pattern string) string {
	toLine := regexp.MustCompile(`(?m)^To: .*` + regexp.QuoteMeta(to))
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		paths, _ := filepath.Glob(filepath.Join(mailDir, "*.eml"))
		type mail struct {
			path string
			mod  time.Time
		}
		var mails []mail
		for _, p := range paths {
			if fi, err := os.Stat(p); err == nil {
				mails = append(mails, mail{p, fi.ModTime()})
			}
		}
		sort.Slice(mails, func(i, j int) bool { return mails[i].mod.After(mails[j].mod) })
		for _, m := range mails {
			text, err := os.ReadFile(m.path)
			if err != nil || !toLine.Match(text) {
				continue
			}
			if found := re.FindSubmatch(text); found != nil {
				return string(found[1])
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	fail("no mail to %s matching %s in %s", to, pattern, mailDir)
	return ""
}

type client struct {
	identity   identityv1.IdentityServiceClient
	orgs       organizationv1.OrganizationServiceClient
	workspaces workspacev1.WorkspaceServiceClient
	billing    billingv1.BillingAccessServiceClient
}

func (c *client) signUp(ctx context.Context, address, name string) string {
	resp, err := c.identity.SignUp(ctx, &identityv1.SignUpRequest{
		Email: address, Password: password, DisplayName: name,
		AccountType: identityv1.AccountType_ACCOUNT_TYPE_BUSINESS,
	})
	check(err, "SignUp "+address)
	if resp.GetUser().GetEmailVerified() {
		fail("%s is verified before clicking the link", address)
	}
	return resp.GetUser().GetId()
}

func (c *client) verify(ctx context.Context, address string) {
	token := mailed(address, `verify-email\?token=(\S+)`)
	resp, err := c.identity.VerifyEmail(ctx, &identityv1.VerifyEmailRequest{Token: token})
	check(err, "VerifyEmail "+address)
	if !resp.GetUser().GetEmailVerified() {
		fail("%s is not verified after VerifyEmail", address)
	}
}

func (c *client) login(ctx context.Context, address string) (userID, accessToken string) {
	resp, err := c.identity.Login(ctx, &identityv1.LoginRequest{Email: address, Password: password})
	check(err, "Login "+address)
	if resp.GetTokens().GetAccessToken() == "" {
		fail("Login %s returned no tokens (MFA challenge: %v)", address, resp.GetMfaChallenge())
	}
	return resp.GetUser().GetId(), resp.GetTokens().GetAccessToken()
}

// refused checks that err is `code` with the Orgplane reason `want`, read as the enum.
func refused(err error, what string, code codes.Code, want errorsv1.ErrorReason) {
	if err == nil {
		fail("%s: succeeded, expected %s %s", what, code, want)
	}
	if got := status.Code(err); got != code {
		fail("%s: code %s, expected %s (%v)", what, got, code, err)
	}
	info := orgplaneerr.Info(err)
	if info == nil {
		fail("%s: no google.rpc.ErrorInfo of domain %s in the status details (%v)", what, orgplaneerr.Domain, err)
	}
	if got := orgplaneerr.Reason(err); got != want {
		fail("%s: reason %s (wire %q), expected %s", what, got, info.GetReason(), want)
	}
	fmt.Printf("  refused as expected: %s %s\n", code, orgplaneerr.Reason(err))
}

func main() {
	addr := os.Getenv("ORGPLANE_ADDR")
	if addr == "" || mailDir == "" {
		fail("set ORGPLANE_ADDR and ORGPLANE_MAIL_DIR")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dialCtx, dialCancel := context.WithTimeout(ctx, 10*time.Second)
	defer dialCancel()
	conn, err := grpc.DialContext(dialCtx, addr, grpc.WithInsecure(), grpc.WithBlock())
	check(err, "dial "+addr)
	defer conn.Close()
	c := &client{
		identity:   identityv1.NewIdentityServiceClient(conn),
		orgs:       organizationv1.NewOrganizationServiceClient(conn),
		workspaces: workspacev1.NewWorkspaceServiceClient(conn),
		billing:    billingv1.NewBillingAccessServiceClient(conn),
	}

	fmt.Println("go client story: owner signs up, verifies, creates an organization")
	owner := email("owner")
	ownerID := c.signUp(ctx, owner, "Olivia Owner")
	_, ownerToken := c.login(ctx, owner)
	create := &organizationv1.CreateOrganizationRequest{Organization: &organizationv1.Organization{
		Name: "Acme " + run, Type: organizationv1.OrganizationType_ORGANIZATION_TYPE_COMPANY,
	}}
	_, err = c.orgs.CreateOrganization(bearer(ctx, ownerToken), create)
	refused(err, "CreateOrganization before verifying", codes.FailedPrecondition,
		errorsv1.ErrorReason_EMAIL_NOT_VERIFIED)
	switch orgplaneerr.Reason(err) { // what a Go caller writes
	case errorsv1.ErrorReason_EMAIL_NOT_VERIFIED:
	default:
		fail("switch on the reason did not match EMAIL_NOT_VERIFIED")
	}

	c.verify(ctx, owner)
	created, err := c.orgs.CreateOrganization(bearer(ctx, ownerToken), create)
	check(err, "CreateOrganization")
	org := created.GetOrganization()
	if org.GetState() != organizationv1.OrganizationState_ORGANIZATION_STATE_ACTIVE || org.GetOwnerUserId() != ownerID {
		fail("created organization: %v", org)
	}
	fmt.Printf("  created %s at revision %d\n", org.GetId(), created.GetRevision())

	fmt.Println("go client story: a developer is invited, signs up, verifies and accepts")
	dev := email("dana")
	_, err = c.orgs.CreateInvite(bearer(ctx, ownerToken), &organizationv1.CreateInviteRequest{
		OrganizationId: org.GetId(),
		Invite:         &organizationv1.Invite{Email: dev, Role: organizationv1.OrgRole_ORG_ROLE_DEVELOPER},
	})
	check(err, "CreateInvite")
	c.signUp(ctx, dev, "Dana Developer")
	c.verify(ctx, dev)
	devID, devToken := c.login(ctx, dev)
	inviteID := mailed(dev, `/invites/(inv_\w+)`)
	accepted, err := c.orgs.AcceptInvite(bearer(ctx, devToken), &organizationv1.AcceptInviteRequest{InviteId: inviteID})
	check(err, "AcceptInvite")
	if accepted.GetMember().GetRole() != organizationv1.OrgRole_ORG_ROLE_DEVELOPER {
		fail("accepted member: %v", accepted.GetMember())
	}
	revision := accepted.GetRevision()
	if created.GetRevision() > revision {
		revision = created.GetRevision()
	}
	fmt.Printf("  %s accepted %s as %s\n", devID, inviteID, accepted.GetMember().GetRole())

	fmt.Println("go client story: a workspace, and the developer's access")
	ws, err := c.workspaces.CreateWorkspace(bearer(ctx, ownerToken), &workspacev1.CreateWorkspaceRequest{
		OrganizationId: org.GetId(), Workspace: &workspacev1.Workspace{Name: "Research"},
	})
	check(err, "CreateWorkspace")
	access, err := c.workspaces.CheckAccess(bearer(ctx, devToken), &workspacev1.CheckAccessRequest{
		OrganizationId:          org.GetId(),
		Subject:                 &workspacev1.CheckAccessRequest_UserId{UserId: devID},
		Permission:              workspacev1.Permission_PERMISSION_READ,
		MinOrganizationRevision: revision,
	})
	check(err, "CheckAccess")
	if !access.GetAllowed() || access.GetRole() != workspacev1.WorkspaceRole_WORKSPACE_ROLE_DEVELOPER {
		fail("CheckAccess in the default workspace: %v", access)
	}
	fmt.Printf("  default workspace: allowed, role %s\n", access.GetRole())
	// A developer is not in a new workspace until added, and cannot read billing.
	inWs, err := c.workspaces.CheckAccess(bearer(ctx, devToken), &workspacev1.CheckAccessRequest{
		OrganizationId:          org.GetId(),
		WorkspaceId:             ws.GetWorkspace().GetId(),
		Subject:                 &workspacev1.CheckAccessRequest_UserId{UserId: devID},
		Permission:              workspacev1.Permission_PERMISSION_READ,
		MinOrganizationRevision: revision,
	})
	check(err, "CheckAccess in "+ws.GetWorkspace().GetId())
	if inWs.GetAllowed() {
		fail("a developer reads %s before being added: %v", ws.GetWorkspace().GetId(), inWs)
	}
	fmt.Printf("  %s: not allowed (%s)\n", ws.GetWorkspace().GetName(), inWs.GetDenialReason())
	_, err = c.billing.GetBillingAccount(bearer(ctx, devToken),
		&billingv1.GetBillingAccountRequest{OrganizationId: org.GetId()})
	refused(err, "GetBillingAccount as a developer", codes.PermissionDenied,
		errorsv1.ErrorReason_INSUFFICIENT_ROLE)

	fmt.Println("go client: story passed")
}
