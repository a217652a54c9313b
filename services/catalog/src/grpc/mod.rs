//! gRPC handlers of the catalog.
mod convert;

use chrono::SubsecRound;
use concert_proto::concert::catalog::v1::{
    AddScheduleRequest, AddScheduleResponse, CreateConcertRequest, CreateConcertResponse, GetConcertRequest,
    GetConcertResponse, GetConcertSalesRequest, GetConcertSalesResponse, GetScheduleSeatsRequest,
    GetScheduleSeatsResponse, ListAvailableDatesRequest, ListAvailableDatesResponse, ListConcertsRequest,
    ListConcertsResponse, ListSeatsRequest, ListSeatsResponse, WatchSeatsRequest, WatchSeatsResponse,
    catalog_admin_service_server::CatalogAdminService, catalog_internal_service_server::CatalogInternalService,
    catalog_service_server::CatalogService,
};
use platform::{
    auth::TokenValidator,
    paging::{PageKey, PageTokens},
    validate,
};
use tonic::{Request, Response, Status};

use crate::{
    domain::SeatStatus,
    service::layouts::ScheduleSeats,
    service::{
        concerts::{Concerts, with_status},
        seat_maps::{Reading, SeatMaps, Watcher},
    },
};
use convert::{concert, grade_ranges, listed_concert, schedule, seat, validated_title_venue};

/// Implements the public, admin and internal catalog APIs.
#[derive(Debug, Clone)]
pub struct CatalogApi {
    concerts: Concerts,
    auth: TokenValidator,
    /// Page tokens of ListConcerts.
    concert_pages: PageTokens,
    seat_maps: SeatMaps,
    /// How long one WatchSeats stream lives (`SEAT_MAP_STREAM_SECS`).
    seat_stream_lifetime: std::time::Duration,
}

impl CatalogApi {
    #[must_use]
    pub fn new(
        concerts: Concerts,
        auth: TokenValidator,
        pages: &PageKey,
        seat_maps: SeatMaps,
        seat_stream_lifetime: std::time::Duration,
    ) -> Self {
        Self { concerts, auth, concert_pages: pages.tokens("ListConcerts"), seat_maps, seat_stream_lifetime }
    }
}

/// A WatchSeats stream: the map each time the date's reading changes, until the reading is
/// lost (UNAVAILABLE, SEAT_FEED_LOST), the watcher leaves or its lifetime ends.
fn seat_map_stream(
    layout: ScheduleSeats,
    watcher: Watcher,
    lifetime: std::time::Duration,
) -> impl futures::Stream<Item = Result<WatchSeatsResponse, Status>> {
    let maps = futures::stream::unfold(Some((watcher, true)), move |state| {
        let layout = layout.clone();
        async move {
            let (mut watcher, first) = state?;
            if !first {
                watcher.readings.changed().await.ok()?;
            }
            loop {
                let reading = watcher.readings.borrow_and_update().clone();
                match reading {
                    Reading::Pending => watcher.readings.changed().await.ok()?,
                    Reading::Live(occupancy) => {
                        let seats = with_status(&layout, &occupancy).iter().map(|(s, st)| seat(s, *st)).collect();
                        return Some((Ok(WatchSeatsResponse { seats }), Some((watcher, false))));
                    }
                    Reading::Lost => {
                        let lost = platform::status::with_reason(
                            tonic::Code::Unavailable,
                            "SEAT_FEED_LOST",
                            "the live seat map lost its feed; poll ListSeats or watch again shortly",
                        );
                        return Some((Err(lost), None));
                    }
                }
            }
        }
    });
    futures::StreamExt::take_until(maps, tokio::time::sleep(lifetime))
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
        let rows = self.concerts.page(&page).await?;
        let (rows, next_page_token) =
            page.page(rows, |(at, c, _)| platform::paging::Cursor { at: *at, id: c.concert_id });
        Ok(Response::new(ListConcertsResponse {
            concerts: rows.iter().map(|(_, c, upcoming)| listed_concert(c, upcoming)).collect(),
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
        let dates = self.concerts.available_dates(concert_id).await?;
        let schedules = dates.iter().map(|(s, left)| schedule(s, *left)).collect();
        Ok(Response::new(ListAvailableDatesResponse { schedules }))
    }

    #[tracing::instrument(skip_all, fields(schedule_id = %request.get_ref().schedule_id))]
    async fn list_seats(&self, request: Request<ListSeatsRequest>) -> Result<Response<ListSeatsResponse>, Status> {
        let principal = self.auth.authenticate(&request).await?;
        let schedule_id = validate::uuid("schedule_id", &request.get_ref().schedule_id)?;
        // The layout is cached (immutable), so checking the concert first costs no query and
        // a token of another concert learns nothing about this date's seats.
        let layout = self.concerts.layout(schedule_id).await?;
        principal.require_concert(layout.0.concert_id)?;
        let seats = self.concerts.seat_map(&layout).await?.iter().map(|(s, status)| seat(s, *status)).collect();
        Ok(Response::new(ListSeatsResponse { seats }))
    }

    type WatchSeatsStream = futures::stream::BoxStream<'static, Result<WatchSeatsResponse, Status>>;

    #[tracing::instrument(skip_all, fields(schedule_id = %request.get_ref().schedule_id))]
    async fn watch_seats(
        &self,
        request: Request<WatchSeatsRequest>,
    ) -> Result<Response<Self::WatchSeatsStream>, Status> {
        let principal = self.auth.authenticate(&request).await?;
        let schedule_id = validate::uuid("schedule_id", &request.get_ref().schedule_id)?;
        let layout = self.concerts.layout(schedule_id).await?;
        principal.require_concert(layout.0.concert_id)?;
        let watcher = self.seat_maps.watch(schedule_id)?;
        Ok(Response::new(Box::pin(seat_map_stream(layout, watcher, self.seat_stream_lifetime))))
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
        let created = self.concerts.create(&title, &venue, sale_opens_at).await?;
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
        let layout = grade_ranges(&r.grades)?;
        let (created, seats) = self.concerts.add_date(concert_id, starts_at, &layout).await?;
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
        let layout = self.concerts.layout(schedule_id).await?;
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
        let sales = self.concerts.sales(concert_id).await?;
        Ok(Response::new(GetConcertSalesResponse { seats: sales.seats, sold: sales.sold, held: sales.held }))
    }

    #[tracing::instrument(skip_all, fields(concert_id = %request.get_ref().concert_id))]
    async fn get_concert(&self, request: Request<GetConcertRequest>) -> Result<Response<GetConcertResponse>, Status> {
        let concert_id = validate::uuid("concert_id", &request.get_ref().concert_id)?;
        let found = self.concerts.concert(concert_id).await?;
        Ok(Response::new(GetConcertResponse { concert: Some(concert(&found)) }))
    }
}
