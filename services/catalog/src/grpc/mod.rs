//! gRPC handlers of the catalog.
mod convert;

use chrono::SubsecRound;
use concert_proto::concert::catalog::v1::{
    AddScheduleRequest, AddScheduleResponse, CreateConcertRequest, CreateConcertResponse, GetConcertRequest,
    GetConcertResponse, GetConcertSalesRequest, GetConcertSalesResponse, GetScheduleSeatsRequest,
    GetScheduleSeatsResponse, ListAvailableDatesRequest, ListAvailableDatesResponse, ListConcertsRequest,
    ListConcertsResponse, ListSeatsRequest, ListSeatsResponse, catalog_admin_service_server::CatalogAdminService,
    catalog_internal_service_server::CatalogInternalService, catalog_service_server::CatalogService,
};
use platform::{
    auth::TokenValidator,
    clock::SharedClock,
    paging::{PageKey, PageTokens},
    validate,
};
use tonic::{Request, Response, Status};

use crate::{
    clients::reservation::OccupancyClient,
    domain::{SEATS_PER_SCHEDULE, SeatStatus},
    service::{layouts::Layouts, sales},
    store::CatalogRepo,
};
use convert::{concert, grade_ranges, schedule, seat, validated_title_venue};

/// Implements the public, admin and internal catalog APIs.
#[derive(Debug, Clone)]
pub struct CatalogApi {
    repo: CatalogRepo,
    layouts: Layouts,
    auth: TokenValidator,
    occupancy: OccupancyClient,
    clock: SharedClock,
    /// Page tokens of ListConcerts.
    concert_pages: PageTokens,
}

impl CatalogApi {
    #[must_use]
    pub fn new(
        repo: CatalogRepo,
        layouts: Layouts,
        auth: TokenValidator,
        occupancy: OccupancyClient,
        clock: SharedClock,
        pages: &PageKey,
    ) -> Self {
        Self { repo, layouts, auth, occupancy, clock, concert_pages: pages.tokens("ListConcerts") }
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    #[tracing::instrument(skip_all)]
    async fn list_concerts(
        &self,
        request: Request<ListConcertsRequest>,
    ) -> Result<Response<ListConcertsResponse>, Status> {
        let r = request.into_inner();
        let page = self.concert_pages.request(r.page_size, &r.page_token)?;
        let rows = self.repo.concerts(&page).await?;
        let (rows, next_page_token) = page.page(rows, |(at, c)| platform::paging::Cursor { at: *at, id: c.concert_id });
        Ok(Response::new(ListConcertsResponse {
            concerts: rows.iter().map(|(_, c)| concert(c)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(concert_id = %request.get_ref().concert_id))]
    async fn list_available_dates(
        &self,
        request: Request<ListAvailableDatesRequest>,
    ) -> Result<Response<ListAvailableDatesResponse>, Status> {
        let principal = self.auth.authenticate(&request).await?;
        let concert_id = validate::uuid("concert_id", &request.get_ref().concert_id)?;
        principal.require_concert(concert_id)?;
        let schedules = self.repo.upcoming_schedules(concert_id, self.clock.now()).await?;
        let ids: Vec<_> = schedules.iter().map(|s| s.schedule_id).collect();
        let occupancy = self.occupancy.occupancy(&ids).await?;
        let schedules = schedules
            .iter()
            .map(|s| {
                let taken = occupancy.keys().filter(|(id, _)| *id == s.schedule_id).count();
                let taken = u32::try_from(taken).unwrap_or(SEATS_PER_SCHEDULE);
                schedule(s, s.total_seats.saturating_sub(taken))
            })
            .collect();
        Ok(Response::new(ListAvailableDatesResponse { schedules }))
    }

    #[tracing::instrument(skip_all, fields(schedule_id = %request.get_ref().schedule_id))]
    async fn list_seats(&self, request: Request<ListSeatsRequest>) -> Result<Response<ListSeatsResponse>, Status> {
        let principal = self.auth.authenticate(&request).await?;
        let schedule_id = validate::uuid("schedule_id", &request.get_ref().schedule_id)?;
        // The layout is cached (immutable), so checking the concert first costs no query and
        // a token of another concert learns nothing about this date's seats.
        let layout = self.layouts.get(schedule_id).await?;
        principal.require_concert(layout.0.concert_id)?;
        let occupancy = self.occupancy.schedule(schedule_id).await?;
        let seats = layout
            .1
            .iter()
            .map(|s| {
                let status = occupancy.get(&(schedule_id, s.seat_number)).copied().unwrap_or(SeatStatus::Available);
                seat(s, status)
            })
            .collect();
        Ok(Response::new(ListSeatsResponse { seats }))
    }
}

#[tonic::async_trait]
impl CatalogAdminService for CatalogApi {
    #[tracing::instrument(skip_all)]
    async fn create_concert(
        &self,
        request: Request<CreateConcertRequest>,
    ) -> Result<Response<CreateConcertResponse>, Status> {
        let r = request.into_inner();
        let (title, venue) = validated_title_venue(&r.title, &r.venue)?;
        // Truncated to what `timestamptz` keeps (microseconds), so the answer equals what a
        // later read returns.
        let sale_opens_at = r
            .sale_opens_at
            .as_ref()
            .map(|t| platform::convert::datetime("sale_opens_at", Some(t)).map(|t| t.trunc_subsecs(6)))
            .transpose()?;
        let created = self.repo.create_concert(&title, &venue, sale_opens_at).await?;
        Ok(Response::new(CreateConcertResponse { concert: Some(concert(&created)) }))
    }

    #[tracing::instrument(skip_all, fields(concert_id = %request.get_ref().concert_id))]
    async fn add_schedule(
        &self,
        request: Request<AddScheduleRequest>,
    ) -> Result<Response<AddScheduleResponse>, Status> {
        let r = request.into_inner();
        let concert_id = validate::uuid("concert_id", &r.concert_id)?;
        let starts_at = platform::convert::datetime("starts_at", r.starts_at.as_ref())?;
        if starts_at <= self.clock.now() {
            return Err(validate::FieldViolation::new("starts_at", "must be in the future").into());
        }
        let layout = grade_ranges(&r.grades)?;
        let (created, seats) = self.repo.add_schedule(concert_id, starts_at, &layout).await?;
        Ok(Response::new(AddScheduleResponse {
            schedule: Some(schedule(&created, created.total_seats)),
            seats: seats.iter().map(|s| seat(s, SeatStatus::Available)).collect(),
        }))
    }
}

#[tonic::async_trait]
impl CatalogInternalService for CatalogApi {
    #[tracing::instrument(skip_all, fields(schedule_id = %request.get_ref().schedule_id))]
    async fn get_schedule_seats(
        &self,
        request: Request<GetScheduleSeatsRequest>,
    ) -> Result<Response<GetScheduleSeatsResponse>, Status> {
        let schedule_id = validate::uuid("schedule_id", &request.get_ref().schedule_id)?;
        let layout = self.layouts.get(schedule_id).await?;
        let (found, seats) = &*layout;
        Ok(Response::new(GetScheduleSeatsResponse {
            schedule: Some(schedule(found, found.total_seats)),
            seats: seats.iter().map(|s| seat(s, SeatStatus::Unknown)).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(concert_id = %request.get_ref().concert_id))]
    async fn get_concert_sales(
        &self,
        request: Request<GetConcertSalesRequest>,
    ) -> Result<Response<GetConcertSalesResponse>, Status> {
        let concert_id = validate::uuid("concert_id", &request.get_ref().concert_id)?;
        let sales = sales::concert_sales(&self.repo, &self.occupancy, concert_id, self.clock.now()).await?;
        Ok(Response::new(GetConcertSalesResponse { seats: sales.seats, sold: sales.sold, held: sales.held }))
    }

    #[tracing::instrument(skip_all, fields(concert_id = %request.get_ref().concert_id))]
    async fn get_concert(&self, request: Request<GetConcertRequest>) -> Result<Response<GetConcertResponse>, Status> {
        let concert_id = validate::uuid("concert_id", &request.get_ref().concert_id)?;
        let found = self.repo.concert(concert_id).await?;
        Ok(Response::new(GetConcertResponse { concert: Some(concert(&found)) }))
    }
}
