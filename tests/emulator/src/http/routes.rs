//! chi's routing as `pkg/controlplane/api/router.go` builds it, reproduced by hand because its rules decide
//! status codes a client sees: middleware of a mounted subtree runs before that subtree's 404/405 (so an
//! unknown path under `/api/v1/adapters/` is 401 without a token), `/x` and `/x/` both reach a mount's `/`
//! route, parameters may be empty when something follows (`/users//password`), HEAD is not GET, and a 405
//! lists one `Allow` header per method.

/// A middleware that may refuse the request, in chain order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// `JWTAuth`: a valid access token.
    Jwt,
    /// `RequirePasswordChange`: the token's must-change claim is not set.
    PasswordChanged,
    /// `RequireAdmin`.
    Admin,
    /// `RequireRole("admin", "operator")`.
    AdapterReader,
}

/// The handlers the emulator implements; parameters are chi's raw URL params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Redirect,
    Live,
    Ready,
    Login,
    Refresh,
    Me,
    ChangeOwnPassword,
    ListUsers,
    CreateUser,
    GetUser(String),
    UpdateUser(String),
    DeleteUser(String),
    ResetPassword(String),
    ListAdapters,
    CreateAdapter,
    ListPorts,
    GetAdapter(String),
    UpdateAdapter(String),
    DeleteAdapter(String),
    AdapterStatus(String),
    /// `POST /store/metadata`.
    CreateMetadataStore,
    /// `POST /store/block/{kind}`.
    CreateBlockStore(String),
    CreateShare,
    DeleteShare(String),
    PutSnapshotPolicy(String),
    GetSnapshotPolicy(String),
    DeleteSnapshotPolicy(String),
    ListSnapshotPolicies,
    /// Admin-only areas whose contents are not emulated (share listing and updates, store listing, settings, …): 501.
    NotEmulated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Endpoint(Endpoint),
    NotFound,
    MethodNotAllowed(Vec<&'static str>),
}

/// Where a request ends up and the middleware it passes on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub gates: Vec<Gate>,
    pub target: Target,
}

/// Admin-only subtrees of the protected group (`r.Route(area, …)` with `RequireAdmin` inside).
const ADMIN_AREAS: &[&str] = &[
    "/groups",
    "/blockstore",
    "/identity-mappings",
    "/sid-mappings",
    "/system",
    "/settings",
    "/identity-providers",
    "/clients",
    "/mounts",
    "/durable-handles",
];

/// Admin-only subtrees under `/adapters/{type}` that are not emulated.
const ADAPTER_AREAS: &[&str] = &["/settings", "/netgroups", "/identity-mappings"];

type Methods = Vec<(&'static str, &'static [Gate], Endpoint)>;

pub fn route(method: &str, path: &str) -> Route {
    let mut gates = Vec::new();
    let target = top(method, path, &mut gates);
    Route { gates, target }
}

/// chi's `Mount(prefix)`: matches `prefix`, `prefix/` and `prefix/*`; the subrouter sees the rest (or `/`).
fn mount<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    match path.strip_prefix(prefix)? {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

/// One pattern's method table: the endpoint for `method` (endpoint gates appended), or the 405 Allow list.
fn pick(method: &str, gates: &mut Vec<Gate>, methods: Methods, also_allowed: &[&'static str]) -> Target {
    let allowed: Vec<&'static str> = also_allowed.iter().copied().chain(methods.iter().map(|m| m.0)).collect();
    match methods.into_iter().find(|m| m.0 == method) {
        Some((_, extra, endpoint)) => {
            gates.extend_from_slice(extra);
            Target::Endpoint(endpoint)
        }
        None => Target::MethodNotAllowed(allowed),
    }
}

fn top(method: &str, path: &str, gates: &mut Vec<Gate>) -> Target {
    if path == "/" {
        return pick(method, gates, vec![("GET", &[], Endpoint::Redirect)], &[]);
    }
    if let Some(rest) = mount(path, "/health") {
        return match rest {
            "/" => pick(method, gates, vec![("GET", &[], Endpoint::Live)], &[]),
            "/ready" => pick(method, gates, vec![("GET", &[], Endpoint::Ready)], &[]),
            _ => Target::NotFound,
        };
    }
    match mount(path, "/api/v1") {
        Some(rest) => api(method, rest, gates),
        None => Target::NotFound,
    }
}

fn api(method: &str, path: &str, gates: &mut Vec<Gate>) -> Target {
    if let Some(rest) = mount(path, "/auth") {
        return match rest {
            "/login" => pick(method, gates, vec![("POST", &[], Endpoint::Login)], &[]),
            "/refresh" => pick(method, gates, vec![("POST", &[], Endpoint::Refresh)], &[]),
            "/me" => pick(method, gates, vec![("GET", &[Gate::Jwt], Endpoint::Me)], &[]),
            _ => Target::NotFound,
        };
    }
    // Registered before the protected group, with JWTAuth on the whole subtree and no must-change gate.
    if let Some(rest) = mount(path, "/users/me/password") {
        gates.push(Gate::Jwt);
        return match rest {
            "/" => pick(method, gates, vec![("POST", &[], Endpoint::ChangeOwnPassword)], &[]),
            _ => Target::NotFound,
        };
    }
    let protected = |gates: &mut Vec<Gate>| gates.extend([Gate::Jwt, Gate::PasswordChanged]);
    if let Some(rest) = mount(path, "/users") {
        protected(gates);
        return users(method, rest, gates);
    }
    if let Some(rest) = mount(path, "/adapters") {
        protected(gates);
        return adapters(method, rest, gates);
    }
    let admin = |gates: &mut Vec<Gate>| gates.extend([Gate::Jwt, Gate::PasswordChanged, Gate::Admin]);
    if let Some(rest) = mount(path, "/shares") {
        admin(gates);
        return shares(method, rest, gates);
    }
    if let Some(rest) = mount(path, "/snapshot-policies") {
        admin(gates);
        return match rest {
            "/" => pick(method, gates, vec![("GET", &[], Endpoint::ListSnapshotPolicies)], &[]),
            _ => Target::NotFound,
        };
    }
    if let Some(rest) = mount(path, "/store") {
        admin(gates);
        return stores(method, rest, gates);
    }
    if ADMIN_AREAS.iter().any(|area| mount(path, area).is_some()) {
        protected(gates);
        gates.push(Gate::Admin);
        return Target::Endpoint(Endpoint::NotEmulated);
    }
    Target::NotFound
}

/// `/shares`: `Post("/")`, `Get("/")`, `Get|Put|Delete("/{name}")`, `Route("/{name}/snapshot-policy")` with
/// `Put|Get|Delete("/")` and `Post("/run")`; the rest of the share subtree is not emulated.
fn shares(method: &str, path: &str, gates: &mut Vec<Gate>) -> Target {
    const NONE: &[Gate] = &[];
    let other = Endpoint::NotEmulated;
    match segments(path)[..] {
        [""] => pick(method, gates, vec![("POST", NONE, Endpoint::CreateShare), ("GET", NONE, other)], &[]),
        [name] => {
            let methods = vec![
                ("GET", NONE, other.clone()),
                ("PUT", NONE, other),
                ("DELETE", NONE, Endpoint::DeleteShare(name.into())),
            ];
            pick(method, gates, methods, &[])
        }
        [name, "snapshot-policy"] | [name, "snapshot-policy", ""] => {
            let methods = vec![
                ("PUT", NONE, Endpoint::PutSnapshotPolicy(name.into())),
                ("GET", NONE, Endpoint::GetSnapshotPolicy(name.into())),
                ("DELETE", NONE, Endpoint::DeleteSnapshotPolicy(name.into())),
            ];
            pick(method, gates, methods, &[])
        }
        [_, "snapshot-policy", "run"] => pick(method, gates, vec![("POST", NONE, other)], &[]),
        [_, "snapshot-policy", ..] => Target::NotFound,
        _ => Target::Endpoint(other),
    }
}

/// `/store`: `Route("/block/{kind}")` and `Route("/metadata")`, each with `Post("/")` and `Get("/")`; the
/// rest (a store by name, its health) is not emulated.
fn stores(method: &str, path: &str, gates: &mut Vec<Gate>) -> Target {
    const NONE: &[Gate] = &[];
    match segments(path)[..] {
        ["metadata"] | ["metadata", ""] => {
            let methods = vec![("POST", NONE, Endpoint::CreateMetadataStore), ("GET", NONE, Endpoint::NotEmulated)];
            pick(method, gates, methods, &[])
        }
        ["block", kind] | ["block", kind, ""] => {
            let methods =
                vec![("POST", NONE, Endpoint::CreateBlockStore(kind.into())), ("GET", NONE, Endpoint::NotEmulated)];
            pick(method, gates, methods, &[])
        }
        _ => Target::Endpoint(Endpoint::NotEmulated),
    }
}

/// Splits a subrouter path into segments: `/` → `[""]`, `/a/` → `["a", ""]`.
fn segments(path: &str) -> Vec<&str> {
    path.strip_prefix('/').unwrap_or(path).split('/').collect()
}

fn users(method: &str, path: &str, gates: &mut Vec<Gate>) -> Target {
    const ADMIN: &[Gate] = &[Gate::Admin];
    match segments(path)[..] {
        [""] => {
            pick(method, gates, vec![("POST", ADMIN, Endpoint::CreateUser), ("GET", ADMIN, Endpoint::ListUsers)], &[])
        }
        [user] => {
            let user = user.to_string();
            let methods = vec![
                ("GET", &[][..], Endpoint::GetUser(user.clone())),
                ("PUT", ADMIN, Endpoint::UpdateUser(user.clone())),
                ("DELETE", ADMIN, Endpoint::DeleteUser(user)),
            ];
            pick(method, gates, methods, &[])
        }
        [user, "password"] => pick(method, gates, vec![("POST", ADMIN, Endpoint::ResetPassword(user.into()))], &[]),
        _ => Target::NotFound,
    }
}

fn adapters(method: &str, path: &str, gates: &mut Vec<Gate>) -> Target {
    let segs = segments(path);
    match segs[..] {
        [""] => {
            let methods = vec![
                ("GET", &[Gate::AdapterReader][..], Endpoint::ListAdapters),
                ("POST", &[Gate::Admin][..], Endpoint::CreateAdapter),
            ];
            return pick(method, gates, methods, &[]);
        }
        ["ports"] if method == "GET" => return Target::Endpoint(Endpoint::ListPorts),
        _ => {}
    }
    // Everything else is the admin-only `/{type}` mount — `ports` too, for methods other than GET, and
    // chi's Allow list then repeats the GET it saw on the static `ports` route.
    let also_allowed: &[&'static str] = if segs[..] == ["ports"] { &["GET"] } else { &[] };
    gates.push(Gate::Admin);
    let kind = segs[0].to_string();
    match &segs[1..] {
        [] | [""] => {
            let methods = vec![
                ("GET", &[][..], Endpoint::GetAdapter(kind.clone())),
                ("PUT", &[][..], Endpoint::UpdateAdapter(kind.clone())),
                ("DELETE", &[][..], Endpoint::DeleteAdapter(kind)),
            ];
            pick(method, gates, methods, also_allowed)
        }
        ["status"] => pick(method, gates, vec![("GET", &[], Endpoint::AdapterStatus(kind))], &[]),
        ["mounts"] => pick(method, gates, vec![("GET", &[], Endpoint::NotEmulated)], &[]),
        [area, ..] if ADAPTER_AREAS.contains(&format!("/{area}").as_str()) => Target::Endpoint(Endpoint::NotEmulated),
        _ => Target::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::{Endpoint as E, Gate::*, Target as T, *};

    fn check(method: &str, path: &str, gates: &[Gate], target: T) {
        assert_eq!(route(method, path), Route { gates: gates.to_vec(), target }, "{method} {path}");
    }

    #[test]
    fn routes_like_chi() {
        check("GET", "/health/", &[], T::Endpoint(E::Live));
        check("GET", "/health/ready/", &[], T::NotFound);
        check("HEAD", "/health", &[], T::MethodNotAllowed(vec!["GET"]));
        check("GET", "/healthz", &[], T::NotFound);
        check("GET", "/api/v1/grace", &[], T::NotFound);
        check("POST", "/api/v1/auth/me", &[], T::MethodNotAllowed(vec!["GET"]));
        check("GET", "/api/v1/auth/me", &[Jwt], T::Endpoint(E::Me));
        check("POST", "/api/v1/users/me/password/", &[Jwt], T::Endpoint(E::ChangeOwnPassword));
        check("GET", "/api/v1/users/", &[Jwt, PasswordChanged, Admin], T::Endpoint(E::ListUsers));
        check(
            "POST",
            "/api/v1/users//password",
            &[Jwt, PasswordChanged, Admin],
            T::Endpoint(E::ResetPassword("".into())),
        );
        check("GET", "/api/v1/users/full/", &[Jwt, PasswordChanged], T::NotFound);
        check("GET", "/api/v1/adapters/", &[Jwt, PasswordChanged, AdapterReader], T::Endpoint(E::ListAdapters));
        check("PATCH", "/api/v1/adapters", &[Jwt, PasswordChanged], T::MethodNotAllowed(vec!["GET", "POST"]));
        check("GET", "/api/v1/adapters/nfs/", &[Jwt, PasswordChanged, Admin], T::Endpoint(E::GetAdapter("nfs".into())));
        check("GET", "/api/v1/adapters/nfs/nope", &[Jwt, PasswordChanged, Admin], T::NotFound);
        check(
            "GET",
            "/api/v1/adapters//status",
            &[Jwt, PasswordChanged, Admin],
            T::Endpoint(E::AdapterStatus("".into())),
        );
        check("GET", "/api/v1/adapters/ports", &[Jwt, PasswordChanged], T::Endpoint(E::ListPorts));
        check(
            "PUT",
            "/api/v1/adapters/ports",
            &[Jwt, PasswordChanged, Admin],
            T::Endpoint(E::UpdateAdapter("ports".into())),
        );
        check(
            "POST",
            "/api/v1/adapters/ports",
            &[Jwt, PasswordChanged, Admin],
            T::MethodNotAllowed(vec!["GET", "GET", "PUT", "DELETE"]),
        );
        check("GET", "/api/v1/adapters/nfs/settings/x", &[Jwt, PasswordChanged, Admin], T::Endpoint(E::NotEmulated));
        check("GET", "/api/v1/shares", &[Jwt, PasswordChanged, Admin], T::Endpoint(E::NotEmulated));
        check("POST", "/api/v1/shares/", &[Jwt, PasswordChanged, Admin], T::Endpoint(E::CreateShare));
        check(
            "PUT",
            "/api/v1/shares/%2Fa/snapshot-policy/",
            &[Jwt, PasswordChanged, Admin],
            T::Endpoint(E::PutSnapshotPolicy("%2Fa".into())),
        );
        check(
            "POST",
            "/api/v1/shares/a/snapshot-policy",
            &[Jwt, PasswordChanged, Admin],
            T::MethodNotAllowed(vec!["PUT", "GET", "DELETE"]),
        );
        check(
            "GET",
            "/api/v1/snapshot-policies/",
            &[Jwt, PasswordChanged, Admin],
            T::Endpoint(E::ListSnapshotPolicies),
        );
        check("GET", "/api/v1/snapshot-policies/x", &[Jwt, PasswordChanged, Admin], T::NotFound);
        check(
            "POST",
            "/api/v1/store/block/local",
            &[Jwt, PasswordChanged, Admin],
            T::Endpoint(E::CreateBlockStore("local".into())),
        );
    }
}
