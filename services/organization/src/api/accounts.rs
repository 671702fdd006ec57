//! The gRPC adapter of `orgplane.organization.v1.AccountService` (rules ACC-1 … ACC-5): the
//! second service of this crate, shaped as [`super::OrganizationApi`] is. Mutations pass their
//! result through [`App::audited`](crate::app::App::audited) so that refusals are audited in the
//! organization acted in.

use orgplane_platform::Call;
use orgplane_proto::organization::v1::account_service_server::AccountService;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response};

use super::{Reply, paths, wire};
use crate::app::accounts::grants::{ListAccountMembers, defaults_message, member_message};
use crate::app::accounts::import::ImportAccount;
use crate::app::accounts::listing::{ListAccounts, ListSubaccounts};
use crate::app::accounts::manage::{CreateAccount, CreateSubaccount, UpdateAccount};
use crate::app::accounts::{AccountFields, message as account};
use crate::app::{Attempt, Scope, SharedApp};

/// The gRPC handlers of `orgplane.organization.v1.AccountService`.
#[derive(Debug, Clone)]
pub struct AccountApi {
    app: SharedApp,
}

impl AccountApi {
    /// Handlers over `app`.
    pub fn new(app: SharedApp) -> Self {
        Self { app }
    }
}

fn fields(a: Account) -> AccountFields {
    AccountFields {
        id: a.id,
        organization_id: a.organization_id,
        display_name: a.display_name,
        owner_user_id: a.owner_user_id,
        compliance: a.compliance,
    }
}

/// Where a request naming an account and optionally the organization acting is audited.
fn scope(organization_id: &str, account_id: &str) -> Scope {
    if organization_id.is_empty() {
        Scope::Account(account_id.to_owned())
    } else {
        Scope::Organization(organization_id.to_owned())
    }
}

#[tonic::async_trait]
impl AccountService for AccountApi {
    async fn create_account(
        &self,
        request: Request<CreateAccountRequest>,
    ) -> Reply<CreateAccountResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "account.create",
            "account",
            "",
        );
        let cmd = CreateAccount {
            organization_id: req.organization_id,
            account: req.account.map(fields),
            request_id: req.request_id,
        };
        let result = wire(self.app.create_account(&call, cmd).await);
        let created = self.app.audited(&call, attempt, result).await?;
        Ok(Response::new(CreateAccountResponse {
            account: Some(account(&created)),
        }))
    }

    async fn get_account(&self, request: Request<GetAccountRequest>) -> Reply<GetAccountResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let found = wire(
            self.app
                .get_account(&call, &req.account_id, &req.organization_id)
                .await,
        )?;
        Ok(Response::new(GetAccountResponse {
            account: Some(account(&found)),
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Reply<ListAccountsResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let cmd = ListAccounts {
            organization_id: req.organization_id,
            r#type: req.r#type,
            state: req.state,
            show_closed: req.show_closed,
            page_size: req.page_size,
            page_token: req.page_token,
        };
        let page = wire(self.app.list_accounts(&call, cmd).await)?;
        Ok(Response::new(ListAccountsResponse {
            accounts: page.items.iter().map(account).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_account(
        &self,
        request: Request<UpdateAccountRequest>,
    ) -> Reply<UpdateAccountResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let (id, org) = req
            .account
            .as_ref()
            .map(|a| (a.id.clone(), a.organization_id.clone()))
            .unwrap_or_default();
        let attempt = Attempt::new(scope(&org, &id), "account.update", "account", &id);
        let cmd = UpdateAccount {
            account: req.account.map(fields),
            paths: paths(req.update_mask),
            etag: req.etag,
        };
        let result = wire(self.app.update_account(&call, cmd).await);
        let updated = self.app.audited(&call, attempt, result).await?;
        Ok(Response::new(UpdateAccountResponse {
            account: Some(account(&updated)),
        }))
    }

    async fn close_account(
        &self,
        request: Request<CloseAccountRequest>,
    ) -> Reply<CloseAccountResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            scope(&req.organization_id, &req.account_id),
            "account.close",
            "account",
            &req.account_id,
        );
        let result = wire(
            self.app
                .close_account(&call, &req.account_id, &req.organization_id, &req.etag)
                .await,
        );
        let closed = self.app.audited(&call, attempt, result).await?;
        Ok(Response::new(CloseAccountResponse {
            account: Some(account(&closed)),
        }))
    }

    async fn import_account(
        &self,
        request: Request<ImportAccountRequest>,
    ) -> Reply<ImportAccountResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "account.import",
            "account",
            &req.account_id,
        );
        let cmd = ImportAccount {
            organization_id: req.organization_id,
            account_id: req.account_id,
            r#type: req.r#type,
        };
        let result = wire(self.app.import_account(&call, cmd).await);
        let pending = self.app.audited(&call, attempt, result).await?;
        Ok(Response::new(ImportAccountResponse {
            account: Some(account(&pending)),
        }))
    }

    async fn accept_account_import(
        &self,
        request: Request<AcceptAccountImportRequest>,
    ) -> Reply<AcceptAccountImportResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "account.accept_import",
            "account",
            &req.account_id,
        );
        let result = wire(
            self.app
                .accept_account_import(&call, &req.account_id, &req.organization_id)
                .await,
        );
        let accepted = self.app.audited(&call, attempt, result).await?;
        Ok(Response::new(AcceptAccountImportResponse {
            account: Some(account(&accepted)),
        }))
    }

    async fn transfer_account_ownership(
        &self,
        request: Request<TransferAccountOwnershipRequest>,
    ) -> Reply<TransferAccountOwnershipResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Account(req.account_id.clone()),
            "account.transfer_ownership",
            "account",
            &req.account_id,
        );
        let result = wire(
            self.app
                .transfer_account_ownership(
                    &call,
                    &req.account_id,
                    &req.new_owner_user_id,
                    &req.etag,
                )
                .await,
        );
        let transferred = self.app.audited(&call, attempt, result).await?;
        Ok(Response::new(TransferAccountOwnershipResponse {
            account: Some(account(&transferred)),
        }))
    }

    async fn create_subaccount(
        &self,
        request: Request<CreateSubaccountRequest>,
    ) -> Reply<CreateSubaccountResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Account(req.parent_account_id.clone()),
            "account.create_subaccount",
            "account",
            "",
        );
        let cmd = CreateSubaccount {
            parent_account_id: req.parent_account_id,
            subaccount: req.subaccount.map(fields),
            request_id: req.request_id,
        };
        let result = wire(self.app.create_subaccount(&call, cmd).await);
        let created = self.app.audited(&call, attempt, result).await?;
        Ok(Response::new(CreateSubaccountResponse {
            subaccount: Some(account(&created)),
        }))
    }

    async fn list_subaccounts(
        &self,
        request: Request<ListSubaccountsRequest>,
    ) -> Reply<ListSubaccountsResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let cmd = ListSubaccounts {
            parent_account_id: req.parent_account_id,
            show_closed: req.show_closed,
            page_size: req.page_size,
            page_token: req.page_token,
        };
        let page = wire(self.app.list_subaccounts(&call, cmd).await)?;
        Ok(Response::new(ListSubaccountsResponse {
            subaccounts: page.items.iter().map(account).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_compliance_defaults(
        &self,
        request: Request<GetComplianceDefaultsRequest>,
    ) -> Reply<GetComplianceDefaultsResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let d = wire(
            self.app
                .get_compliance_defaults(&call, &req.organization_id)
                .await,
        )?;
        Ok(Response::new(GetComplianceDefaultsResponse {
            defaults: Some(defaults_message(&d)),
        }))
    }

    async fn update_compliance_defaults(
        &self,
        request: Request<UpdateComplianceDefaultsRequest>,
    ) -> Reply<UpdateComplianceDefaultsResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "compliance_defaults.update",
            "compliance_defaults",
            &req.organization_id,
        );
        let result = wire(
            self.app
                .update_compliance_defaults(&call, &req.organization_id, req.designation, &req.etag)
                .await,
        );
        let d = self.app.audited(&call, attempt, result).await?;
        Ok(Response::new(UpdateComplianceDefaultsResponse {
            defaults: Some(defaults_message(&d)),
        }))
    }

    async fn add_account_member(
        &self,
        request: Request<AddAccountMemberRequest>,
    ) -> Reply<AddAccountMemberResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            scope(&req.organization_id, &req.account_id),
            "account.add_member",
            "account_member",
            &req.user_id,
        );
        let result = wire(
            self.app
                .add_account_member(&call, &req.account_id, &req.organization_id, &req.user_id)
                .await,
        );
        let m = self.app.audited(&call, attempt, result).await?;
        Ok(Response::new(AddAccountMemberResponse {
            member: Some(member_message(&m)),
        }))
    }

    async fn list_account_members(
        &self,
        request: Request<ListAccountMembersRequest>,
    ) -> Reply<ListAccountMembersResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let cmd = ListAccountMembers {
            account_id: req.account_id,
            organization_id: req.organization_id,
            page_size: req.page_size,
            page_token: req.page_token,
        };
        let page = wire(self.app.list_account_members(&call, cmd).await)?;
        Ok(Response::new(ListAccountMembersResponse {
            members: page.items.iter().map(member_message).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn remove_account_member(
        &self,
        request: Request<RemoveAccountMemberRequest>,
    ) -> Reply<RemoveAccountMemberResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            scope(&req.organization_id, &req.account_id),
            "account.remove_member",
            "account_member",
            &req.user_id,
        );
        let result = wire(
            self.app
                .remove_account_member(&call, &req.account_id, &req.organization_id, &req.user_id)
                .await,
        );
        self.app.audited(&call, attempt, result).await?;
        Ok(Response::new(RemoveAccountMemberResponse {}))
    }
}
