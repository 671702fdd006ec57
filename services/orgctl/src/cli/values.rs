//! The value enums of the command line, each mapped onto its proto enum.

use clap::ValueEnum;

/// Declares a clap value enum mapped onto a proto enum's values.
macro_rules! proto_enum {
    ($(#[$meta:meta])* $name:ident => $proto:ty { $($(#[$vmeta:meta])* $variant:ident => $value:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl From<$name> for $proto {
            fn from(v: $name) -> $proto {
                match v {
                    $($name::$variant => <$proto>::$value),+
                }
            }
        }

        impl $name {
            /// The proto enum's number.
            pub fn number(self) -> i32 {
                <$proto>::from(self) as i32
            }
        }
    };
}

use orgplane_proto::audit::v1 as audit_pb;
use orgplane_proto::billing::v1 as billing_pb;
use orgplane_proto::identity::v1 as identity_pb;
use orgplane_proto::organization::v1 as org_pb;
use orgplane_proto::workspace::v1 as ws_pb;

proto_enum!(
    /// A kind of account.
    AccountType => identity_pb::AccountType {
        /// May create and own organizations.
        Business => Business,
        /// Joins organizations by invitation.
        Personal => Personal,
    }
);

proto_enum!(
    /// An organization role.
    OrgRole => org_pb::OrgRole {
        /// Owns the organization (changes only by transfer).
        Owner => Owner,
        /// Administers the organization.
        Admin => Admin,
        /// Manages billing.
        Billing => Billing,
        /// Develops in the workspaces they are given.
        Developer => Developer,
        /// Uses the workspaces they are given.
        User => User,
    }
);

proto_enum!(
    /// A kind of organization.
    OrgType => org_pb::OrganizationType {
        /// A company.
        Company => Company,
        /// A nonprofit.
        Nonprofit => Nonprofit,
        /// A government body.
        Government => Government,
        /// An education institution.
        Education => Education,
        /// Something else.
        Other => Other,
    }
);

proto_enum!(
    /// An invite's state.
    InviteState => org_pb::InviteState {
        /// Waiting for the invitee.
        Pending => Pending,
        /// Accepted.
        Accepted => Accepted,
        /// Expired unaccepted.
        Expired => Expired,
        /// Withdrawn.
        Deleted => Deleted,
    }
);

proto_enum!(
    /// A workspace role.
    WorkspaceRole => ws_pb::WorkspaceRole {
        /// Administers the workspace.
        Admin => Admin,
        /// Develops in the workspace.
        Developer => Developer,
        /// Uses the workspace.
        User => User,
        /// Sees the workspace's billing.
        Billing => Billing,
    }
);

proto_enum!(
    /// What CheckAccess asks about.
    Permission => ws_pb::Permission {
        /// Read the workspace.
        Read => Read,
        /// Use the workspace's product.
        Use => Use,
        /// Develop in the workspace.
        Develop => Develop,
        /// See its billing.
        Billing => Billing,
        /// Administer it.
        Admin => Admin,
    }
);

proto_enum!(
    /// A kind of API key.
    ApiKeyKind => identity_pb::ApiKeyKind {
        /// ADMIN rights in the organization.
        Admin => Admin,
        /// One workspace.
        Workspace => Workspace,
    }
);

proto_enum!(
    /// An API key's status.
    ApiKeyStatus => identity_pb::ApiKeyStatus {
        /// Accepted.
        Active => Active,
        /// Refused.
        Inactive => Inactive,
    }
);

proto_enum!(
    /// A kind of audit actor.
    ActorKind => audit_pb::ActorKind {
        /// A signed-in user.
        User => User,
        /// An API key.
        ApiKey => ApiKey,
        /// A service account.
        Service => Service,
        /// Orgplane itself.
        System => System,
        /// An operator organization.
        Operator => Operator,
    }
);

proto_enum!(
    /// An audit record's outcome.
    Outcome => audit_pb::Outcome {
        /// Succeeded.
        Success => Success,
        /// Was refused.
        Failure => Failure,
    }
);

proto_enum!(
    /// A usage report's bucket width.
    Bucket => billing_pb::BucketWidth {
        /// One minute.
        Minute => OneMinute,
        /// One hour.
        Hour => OneHour,
        /// One day.
        Day => OneDay,
    }
);

proto_enum!(
    /// A usage report dimension.
    UsageDimension => billing_pb::UsageDimension {
        /// By workspace.
        Workspace => Workspace,
        /// By API key.
        ApiKey => ApiKey,
        /// By model.
        Model => Model,
        /// By user.
        User => User,
        /// By billed account (a subaccount's usage under its parent).
        Account => Account,
        /// By the account the usage named (subaccounts apart).
        Subaccount => Subaccount,
    }
);

proto_enum!(
    /// A cost report dimension.
    CostDimension => billing_pb::CostDimension {
        /// By workspace.
        Workspace => Workspace,
        /// By description (model and token type).
        Description => Description,
        /// By billed account (a subaccount's usage under its parent).
        Account => Account,
        /// By the account the usage named (subaccounts apart).
        Subaccount => Subaccount,
    }
);

proto_enum!(
    /// What an imported account becomes once its owner accepts (rule ACC-2).
    ImportType => org_pb::AccountType {
        /// The account moves to the organization (its owner's email must be in a verified
        /// domain of it).
        Managed => Managed,
        /// The account stays where it is; members may be granted access to it.
        Independent => Independent,
    }
);

proto_enum!(
    /// What an account is to an organization (rule ACC-2).
    AccountListType => org_pb::AccountType {
        /// Owned by the organization.
        Managed => Managed,
        /// An external account members may be granted access to.
        Independent => Independent,
        /// An import awaiting its owner's confirmation.
        Pending => Pending,
    }
);

proto_enum!(
    /// An account's state.
    AccountState => org_pb::AccountState {
        /// Open.
        Active => Active,
        /// Closed for good.
        Closed => Closed,
    }
);

proto_enum!(
    /// A compliance designation (rule ACC-5).
    Compliance => org_pb::ComplianceDesignation {
        /// No designation.
        None => None,
        /// HIPAA (protected health information under a business associate agreement).
        Hipaa => Hipaa,
    }
);

/// Which service's audit log to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditService {
    /// All four, merged newest first.
    All,
    /// The identity service (API keys, admin credential resets).
    Identity,
    /// The organization service (organizations, members, invites, units, policies).
    Organization,
    /// The workspace service (workspaces and their members).
    Workspace,
    /// The billing-access service (billing accounts).
    Billing,
}
