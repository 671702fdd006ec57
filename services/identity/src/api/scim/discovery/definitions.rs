//! The attribute definitions of the resources we serve (RFC 7643 §4, §8.7.1): the one source of
//! the `/Schemas` documents and of the rules the filter, PATCH and projection code follow
//! (case-exactness, multi-valuedness, mutability, `returned`).

use super::super::filter::AttrPath;
use super::super::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, ResourceKind, USER_SCHEMA};

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// A string.
    String,
    /// `true` or `false`.
    Boolean,
    /// A real number.
    Decimal,
    /// A whole number.
    Integer,
    /// An RFC 3339 instant.
    DateTime,
    /// A URI to the named kinds of resource.
    Reference(&'static [&'static str]),
    /// An object of sub-attributes.
    Complex,
    /// Base64 bytes.
    Binary,
}

impl AttrType {
    /// The name RFC 7643 gives the type.
    pub fn name(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Reference(_) => "reference",
            AttrType::Complex => "complex",
            AttrType::Binary => "binary",
        }
    }
}

/// Who may write an attribute (RFC 7643 §7 `mutability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Set by the service only.
    ReadOnly,
    /// Clients read and write it.
    ReadWrite,
    /// Written once, then fixed.
    Immutable,
    /// Written, never read back.
    WriteOnly,
}

/// When an attribute appears in responses (RFC 7643 §7 `returned`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Always, whatever `attributes` / `excludedAttributes` say.
    Always,
    /// Never.
    Never,
    /// Unless excluded.
    Default,
    /// Only when asked for.
    Request,
}

/// One attribute of a schema.
#[derive(Debug, Clone, Copy)]
pub struct AttributeDef {
    /// The attribute's name, as the schema spells it.
    pub name: &'static str,
    /// Its data type.
    pub ty: AttrType,
    /// Whether it holds a list.
    pub multi_valued: bool,
    /// Whether it must have a value.
    pub required: bool,
    /// Whether strings compare with case.
    pub case_exact: bool,
    /// Who may write it.
    pub mutability: Mutability,
    /// When it is returned.
    pub returned: Returned,
    /// `none` or `server`.
    pub unique_server: bool,
    /// Suggested values (`type` of an email, …).
    pub canonical_values: &'static [&'static str],
    /// A sentence for people.
    pub description: &'static str,
    /// The sub-attributes of a complex attribute.
    pub sub_attributes: &'static [AttributeDef],
}

impl AttributeDef {
    const fn new(name: &'static str, ty: AttrType, description: &'static str) -> Self {
        Self {
            name,
            ty,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            unique_server: false,
            canonical_values: &[],
            description,
            sub_attributes: &[],
        }
    }
    const fn multi(self) -> Self {
        Self {
            multi_valued: true,
            ..self
        }
    }
    const fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }
    const fn case_exact(self) -> Self {
        Self {
            case_exact: true,
            ..self
        }
    }
    const fn mutability(self, mutability: Mutability) -> Self {
        Self { mutability, ..self }
    }
    const fn returned(self, returned: Returned) -> Self {
        Self { returned, ..self }
    }
    const fn unique(self) -> Self {
        Self {
            unique_server: true,
            ..self
        }
    }
    const fn canonical(self, canonical_values: &'static [&'static str]) -> Self {
        Self {
            canonical_values,
            ..self
        }
    }
    const fn subs(self, sub_attributes: &'static [AttributeDef]) -> Self {
        Self {
            sub_attributes,
            ..self
        }
    }

    /// The sub-attribute `name`, compared ignoring case (RFC 7643 §2.1).
    pub fn sub(&self, name: &str) -> Option<&'static AttributeDef> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Whether it is a complex attribute.
    pub fn is_complex(&self) -> bool {
        self.ty == AttrType::Complex
    }
}

/// A schema: its URN, name, description and attributes.
#[derive(Debug, Clone, Copy)]
pub struct SchemaDef {
    /// The schema URN (its `id`).
    pub id: &'static str,
    /// A short name.
    pub name: &'static str,
    /// A sentence for people.
    pub description: &'static str,
    /// Its attributes.
    pub attributes: &'static [AttributeDef],
}

impl SchemaDef {
    /// The attribute `name`, compared ignoring case.
    pub fn attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

use AttrType::{Boolean, Complex, DateTime, Reference, String as Str};
use Mutability::{Immutable, ReadOnly, WriteOnly};

const TYPE_DESC: &str = "A label indicating the attribute's function.";
const PRIMARY_DESC: &str =
    "A Boolean value indicating the 'primary' or preferred attribute value for this attribute.";
const DISPLAY_DESC: &str = "A human-readable name, primarily used for display purposes.";

const NAME_SUBS: &[AttributeDef] = &[
    AttributeDef::new(
        "formatted",
        Str,
        "The full name, including all middle names, titles, and suffixes as appropriate.",
    ),
    AttributeDef::new("familyName", Str, "The family name of the User."),
    AttributeDef::new("givenName", Str, "The given name of the User."),
    AttributeDef::new("middleName", Str, "The middle name(s) of the User."),
    AttributeDef::new(
        "honorificPrefix",
        Str,
        "The honorific prefix(es) of the User.",
    ),
    AttributeDef::new(
        "honorificSuffix",
        Str,
        "The honorific suffix(es) of the User.",
    ),
];

const EMAIL_SUBS: &[AttributeDef] = &[
    AttributeDef::new("value", Str, "Email address for the User."),
    AttributeDef::new("display", Str, DISPLAY_DESC),
    AttributeDef::new("type", Str, TYPE_DESC).canonical(&["work", "home", "other"]),
    AttributeDef::new("primary", Boolean, PRIMARY_DESC),
];

const PHONE_SUBS: &[AttributeDef] = &[
    AttributeDef::new("value", Str, "Phone number of the User."),
    AttributeDef::new("display", Str, DISPLAY_DESC),
    AttributeDef::new("type", Str, TYPE_DESC)
        .canonical(&["work", "home", "mobile", "fax", "pager", "other"]),
    AttributeDef::new("primary", Boolean, PRIMARY_DESC),
];

const ADDRESS_SUBS: &[AttributeDef] = &[
    AttributeDef::new(
        "formatted",
        Str,
        "The full mailing address, formatted for display or use with a mailing label.",
    ),
    AttributeDef::new("streetAddress", Str, "The full street address component."),
    AttributeDef::new("locality", Str, "The city or locality component."),
    AttributeDef::new("region", Str, "The state or region component."),
    AttributeDef::new("postalCode", Str, "The zip code or postal code component."),
    AttributeDef::new("country", Str, "The country name component."),
    AttributeDef::new("type", Str, TYPE_DESC).canonical(&["work", "home", "other"]),
    AttributeDef::new("primary", Boolean, PRIMARY_DESC),
];

const USER_GROUP_SUBS: &[AttributeDef] = &[
    AttributeDef::new("value", Str, "The identifier of the User's group.").mutability(ReadOnly),
    AttributeDef::new(
        "$ref",
        Reference(&["User", "Group"]),
        "The URI of the corresponding 'Group' resource to which the user belongs.",
    )
    .mutability(ReadOnly),
    AttributeDef::new("display", Str, DISPLAY_DESC).mutability(ReadOnly),
    AttributeDef::new("type", Str, TYPE_DESC)
        .canonical(&["direct", "indirect"])
        .mutability(ReadOnly),
];

const USER_ATTRIBUTES: &[AttributeDef] = &[
    AttributeDef::new(
        "userName",
        Str,
        "Unique identifier for the User, here an email address of a verified domain of the organization.",
    )
    .required()
    .unique()
    .returned(Returned::Always),
    AttributeDef::new("name", Complex, "The components of the user's real name.").subs(NAME_SUBS),
    AttributeDef::new("displayName", Str, "The name of the User, suitable for display to end-users."),
    AttributeDef::new("nickName", Str, "The casual way to address the user in real life."),
    AttributeDef::new(
        "profileUrl",
        Reference(&["external"]),
        "A fully qualified URL pointing to a page representing the User's online profile.",
    ),
    AttributeDef::new("title", Str, "The user's title, such as \"Vice President\"."),
    AttributeDef::new(
        "userType",
        Str,
        "Used to identify the relationship between the organization and the user.",
    ),
    AttributeDef::new(
        "preferredLanguage",
        Str,
        "Indicates the User's preferred written or spoken language.",
    ),
    AttributeDef::new(
        "locale",
        Str,
        "Used to indicate the User's default location for purposes of localizing items.",
    ),
    AttributeDef::new(
        "timezone",
        Str,
        "The User's time zone in the 'Olson' time zone database format.",
    ),
    AttributeDef::new("active", Boolean, "A Boolean value indicating the User's administrative status."),
    AttributeDef::new(
        "password",
        Str,
        "The User's cleartext password; not stored: users sign in through SSO or a reset link.",
    )
    .mutability(WriteOnly)
    .returned(Returned::Never),
    AttributeDef::new("emails", Complex, "Email addresses for the user.")
        .multi()
        .subs(EMAIL_SUBS),
    AttributeDef::new("phoneNumbers", Complex, "Phone numbers for the User.")
        .multi()
        .subs(PHONE_SUBS),
    AttributeDef::new("addresses", Complex, "A physical mailing address for this User.")
        .multi()
        .subs(ADDRESS_SUBS),
    AttributeDef::new(
        "groups",
        Complex,
        "A list of groups to which the user belongs, either through direct membership or through nested groups.",
    )
    .multi()
    .mutability(ReadOnly)
    .subs(USER_GROUP_SUBS),
];

const MANAGER_SUBS: &[AttributeDef] = &[
    AttributeDef::new(
        "value",
        Str,
        "The id of the SCIM resource representing the User's manager.",
    ),
    AttributeDef::new(
        "$ref",
        Reference(&["User"]),
        "The URI of the SCIM resource representing the User's manager.",
    ),
    AttributeDef::new("displayName", Str, "The displayName of the User's manager.")
        .mutability(ReadOnly),
];

const ENTERPRISE_ATTRIBUTES: &[AttributeDef] = &[
    AttributeDef::new(
        "employeeNumber",
        Str,
        "Numeric or alphanumeric identifier assigned to a person by the organization.",
    ),
    AttributeDef::new("costCenter", Str, "Identifies the name of a cost center."),
    AttributeDef::new(
        "organization",
        Str,
        "Identifies the name of an organization.",
    ),
    AttributeDef::new("division", Str, "Identifies the name of a division."),
    AttributeDef::new("department", Str, "Identifies the name of a department."),
    AttributeDef::new("manager", Complex, "The User's manager.").subs(MANAGER_SUBS),
];

const MEMBER_SUBS: &[AttributeDef] = &[
    AttributeDef::new("value", Str, "Identifier of the member of this Group.")
        .case_exact()
        .mutability(Immutable),
    AttributeDef::new(
        "$ref",
        Reference(&["User", "Group"]),
        "The URI corresponding to a SCIM resource that is a member of this Group.",
    )
    .case_exact()
    .mutability(Immutable),
    AttributeDef::new("display", Str, DISPLAY_DESC).mutability(ReadOnly),
    AttributeDef::new(
        "type",
        Str,
        "A label indicating the type of resource, e.g., 'User'.",
    )
    .canonical(&["User", "Group"])
    .mutability(Immutable),
];

const GROUP_ATTRIBUTES: &[AttributeDef] = &[
    AttributeDef::new("displayName", Str, "A human-readable name for the Group.")
        .required()
        .returned(Returned::Always),
    AttributeDef::new("members", Complex, "A list of members of the Group.")
        .multi()
        .subs(MEMBER_SUBS),
];

const META_SUBS: &[AttributeDef] = &[
    AttributeDef::new(
        "resourceType",
        Str,
        "The name of the resource type of the resource.",
    )
    .case_exact()
    .mutability(ReadOnly),
    AttributeDef::new(
        "created",
        DateTime,
        "When the resource was added to the service provider.",
    )
    .mutability(ReadOnly),
    AttributeDef::new(
        "lastModified",
        DateTime,
        "When the resource was last changed.",
    )
    .mutability(ReadOnly),
    AttributeDef::new("location", Reference(&["uri"]), "The URI of the resource.")
        .case_exact()
        .mutability(ReadOnly),
    AttributeDef::new("version", Str, "The version (ETag) of the resource.")
        .case_exact()
        .mutability(ReadOnly),
];

/// The attributes every resource has (RFC 7643 §3.1); not part of any `/Schemas` document.
pub const COMMON_ATTRIBUTES: &[AttributeDef] = &[
    AttributeDef::new(
        "id",
        Str,
        "The service provider's identifier of the resource.",
    )
    .case_exact()
    .mutability(ReadOnly)
    .returned(Returned::Always)
    .unique(),
    AttributeDef::new(
        "externalId",
        Str,
        "The provisioning client's identifier of the resource.",
    )
    .case_exact(),
    AttributeDef::new("meta", Complex, "Resource metadata.")
        .mutability(ReadOnly)
        .subs(META_SUBS),
    AttributeDef::new(
        "schemas",
        Reference(&["uri"]),
        "The schemas of the resource.",
    )
    .multi()
    .required()
    .case_exact()
    .mutability(ReadOnly)
    .returned(Returned::Always),
];

/// The core User schema (RFC 7643 §4.1), as far as we keep it.
pub const USER: SchemaDef = SchemaDef {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRIBUTES,
};

/// The enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_USER: SchemaDef = SchemaDef {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_ATTRIBUTES,
};

/// The core Group schema (RFC 7643 §4.2).
pub const GROUP: SchemaDef = SchemaDef {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRIBUTES,
};

/// Every schema `/Schemas` lists.
pub const ALL: [SchemaDef; 3] = [USER, ENTERPRISE_USER, GROUP];

/// The core schema of `kind`.
pub fn core(kind: ResourceKind) -> &'static SchemaDef {
    match kind {
        ResourceKind::User => &USER,
        ResourceKind::Group => &GROUP,
    }
}

/// The extension schemas `kind` accepts.
pub fn extensions(kind: ResourceKind) -> &'static [SchemaDef] {
    match kind {
        ResourceKind::User => std::slice::from_ref(&ENTERPRISE_USER),
        ResourceKind::Group => &[],
    }
}

/// The top-level attribute `name` of `kind`'s core schema or the common attributes.
pub fn core_attribute(kind: ResourceKind, name: &str) -> Option<&'static AttributeDef> {
    core(kind).attribute(name).or_else(|| {
        COMMON_ATTRIBUTES
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    })
}

/// The extension schema of `kind` whose URN is `urn` (ignoring case).
pub fn extension(kind: ResourceKind, urn: &str) -> Option<&'static SchemaDef> {
    extensions(kind)
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(urn))
}

/// Whether `urn` is the core schema of `kind`.
pub fn is_core(kind: ResourceKind, urn: &str) -> bool {
    core(kind).id.eq_ignore_ascii_case(urn)
}

/// The definition of the attribute `path` ends at in any resource kind (for checks made before
/// the kind is known, such as parsing a filter).
pub fn any_attribute(path: &AttrPath) -> Option<&'static AttributeDef> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .find_map(|kind| path.leaf_def(kind))
}
