//! Handlers of the unit RPCs (ORG-9).

use orgplane_platform::Call;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response};

use super::convert::unit;
use super::{Reply, paths, wire};
use crate::app::units::{CreateUnit, ListUnits, UnitFields, UpdateUnit};
use crate::app::{App, Attempt, Scope};

fn fields(u: Unit) -> UnitFields {
    UnitFields {
        id: u.id,
        parent_unit_id: u.parent_unit_id,
        name: u.name,
    }
}

pub(super) async fn create(
    app: &App,
    request: Request<CreateUnitRequest>,
) -> Reply<CreateUnitResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let attempt = Attempt::new(
        Scope::Organization(req.organization_id.clone()),
        "unit.create",
        "unit",
        "",
    );
    let cmd = CreateUnit {
        organization_id: req.organization_id,
        unit: req.unit.map(fields),
        request_id: req.request_id,
    };
    let result = wire(app.create_unit(&call, cmd).await);
    let created = app.audited(&call, attempt, result).await?;
    Ok(Response::new(CreateUnitResponse {
        unit: Some(unit(&created)),
    }))
}

pub(super) async fn get(app: &App, request: Request<GetUnitRequest>) -> Reply<GetUnitResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let found = wire(app.get_unit(&call, &req.unit_id).await)?;
    Ok(Response::new(GetUnitResponse {
        unit: Some(unit(&found)),
    }))
}

pub(super) async fn list(
    app: &App,
    request: Request<ListUnitsRequest>,
) -> Reply<ListUnitsResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let cmd = ListUnits {
        organization_id: req.organization_id,
        parent_unit_id: req.parent_unit_id,
        page_size: req.page_size,
        page_token: req.page_token,
    };
    let page = wire(app.list_units(&call, cmd).await)?;
    Ok(Response::new(ListUnitsResponse {
        units: page.items.iter().map(unit).collect(),
        next_page_token: page.next_page_token,
    }))
}

pub(super) async fn update(
    app: &App,
    request: Request<UpdateUnitRequest>,
) -> Reply<UpdateUnitResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let id = req.unit.as_ref().map(|u| u.id.clone()).unwrap_or_default();
    let attempt = Attempt::new(Scope::Unit(id.clone()), "unit.update", "unit", &id);
    let cmd = UpdateUnit {
        unit: req.unit.map(fields),
        paths: paths(req.update_mask),
        etag: req.etag,
    };
    let result = wire(app.update_unit(&call, cmd).await);
    let updated = app.audited(&call, attempt, result).await?;
    Ok(Response::new(UpdateUnitResponse {
        unit: Some(unit(&updated)),
    }))
}

pub(super) async fn delete(
    app: &App,
    request: Request<DeleteUnitRequest>,
) -> Reply<DeleteUnitResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let attempt = Attempt::new(
        Scope::Unit(req.unit_id.clone()),
        "unit.delete",
        "unit",
        &req.unit_id,
    );
    let result = wire(app.delete_unit(&call, &req.unit_id, &req.etag).await);
    app.audited(&call, attempt, result).await?;
    Ok(Response::new(DeleteUnitResponse {}))
}
