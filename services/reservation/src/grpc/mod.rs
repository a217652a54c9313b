//! gRPC handlers of the reservation service.
mod convert;

use concert_proto::concert::reservation::v1::{
    CancelReservationRequest, CancelReservationResponse, ExportPaymentsRequest, ExportPaymentsResponse,
    GetOccupancyRequest, GetOccupancyResponse, GetReservationRequest, GetReservationResponse, HoldSeatRequest,
    HoldSeatResponse, ListPaymentsRequest, ListPaymentsResponse, ListReservationsRequest, ListReservationsResponse,
    PayReservationRequest, PayReservationResponse, WatchOccupancyRequest, WatchOccupancyResponse,
    reservation_internal_service_server::ReservationInternalService, reservation_service_server::ReservationService,
};
use platform::{auth::TokenValidator, clock::SharedClock, identity, outbound::Deadline, validate};
use tonic::{Code, Request, Response, Status};

use crate::service::{
    cancel::Cancels,
    hold::Holds,
    pay::{Paid, Payer, Payments},
    seat_feed::SeatFeed,
};
use convert::{occupied, order, payment, payment_record, reservation, seat_choice, ticket};

/// Most schedules one occupancy lookup may name.
const MAX_OCCUPANCY_SCHEDULES: usize = 1_000;

/// Implements the public and the internal reservation API: validates, authenticates and
/// converts; the use cases are `service::{hold, pay}`. Built by `app::run`, which owns the
/// background tasks of the batchers and clients it holds.
#[derive(Debug, Clone)]
pub struct ReservationApi {
    pub(crate) auth: TokenValidator,
    pub(crate) holds: Holds,
    pub(crate) payments: Payments,
    pub(crate) cancels: Cancels,
    pub(crate) seat_feed: SeatFeed,
    pub(crate) clock: SharedClock,
    /// The recovery worker's limit of tries (reported by ExportPayments).
    pub(crate) payment_max_attempts: i32,
    /// Page tokens of ListReservations.
    pub(crate) reservation_pages: platform::paging::PageTokens,
    /// Page tokens of ListPayments.
    pub(crate) payment_pages: platform::paging::PageTokens,
}

/// The answer to a payment that bought its seats.
fn paid(p: &Paid, now: chrono::DateTime<chrono::Utc>) -> PayReservationResponse {
    let reservations: Vec<_> = p.reservations.iter().map(|r| reservation(r, now)).collect();
    let ids = p.reservations.iter().map(|r| r.reservation_id).collect::<Vec<_>>();
    PayReservationResponse {
        payment: Some(payment(&p.payment, &ids)),
        reservation: reservations.first().cloned(),
        balance_after: p.payment.balance_after.map(|b| b.get()).unwrap_or_default(),
        reservations,
    }
}

#[tonic::async_trait]
impl ReservationService for ReservationApi {
    #[tracing::instrument(skip_all, fields(schedule_id = %request.get_ref().schedule_id, seat = request.get_ref().seat_number))]
    async fn hold_seat(&self, request: Request<HoldSeatRequest>) -> Result<Response<HoldSeatResponse>, Status> {
        let shown = self.auth.admission_shown(&request)?;
        let r = request.get_ref();
        let schedule_id = validate::uuid("schedule_id", &r.schedule_id)?;
        let choice = seat_choice(r.seat_number, &r.alternative_seat_numbers, r.best_available)?;
        if let Some(admission) = &shown {
            // A crowd on the same seats is refused from what this replica knows before the
            // queue is asked whether the admission still stands: a refusal writes nothing.
            self.holds.refuse_early(admission, schedule_id, &choice).await?;
        }
        let principal = self.auth.authenticate_fresh(&request).await?;
        let held = self.holds.hold(&principal, schedule_id, &choice).await?;
        Ok(Response::new(HoldSeatResponse { reservation: Some(reservation(&held, self.clock.now())) }))
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn get_reservation(
        &self,
        request: Request<GetReservationRequest>,
    ) -> Result<Response<GetReservationResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let r = request.into_inner();
        let id = validate::uuid("reservation_id", &r.reservation_id)?;
        let found = self.holds.reservation_of(&user_id, id).await?;
        Ok(Response::new(GetReservationResponse { reservation: Some(ticket(&found, self.clock.now())) }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_reservations(
        &self,
        request: Request<ListReservationsRequest>,
    ) -> Result<Response<ListReservationsResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let r = request.into_inner();
        let page = self.reservation_pages.request(r.page_size, &r.page_token)?;
        let now = self.clock.now();
        let list = self.holds.list(&user_id, &page).await?;
        let (list, next_page_token) = page
            .page(list, |t| platform::paging::Cursor { at: t.reservation.held_at, id: t.reservation.reservation_id });
        Ok(Response::new(ListReservationsResponse {
            reservations: list.iter().map(|t| ticket(t, now)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn cancel_reservation(
        &self,
        request: Request<CancelReservationRequest>,
    ) -> Result<Response<CancelReservationResponse>, Status> {
        // The reservation is the caller's: the access token is enough (a queue token spent by
        // the payment, or none, may still release holds and give tickets back). Without
        // identities (authentication off) the queue token names the caller.
        let user_id = match identity::identity(&request) {
            Some(caller) => caller.subject.clone(),
            None => self.auth.authenticate_fresh(&request).await?.user_id,
        };
        let id = validate::uuid("reservation_id", &request.get_ref().reservation_id)?;
        let cancelled = self.cancels.cancel(&user_id, id, Deadline::from_request(&request)).await?;
        Ok(Response::new(CancelReservationResponse { reservation: Some(reservation(&cancelled, self.clock.now())) }))
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id, seats = request.get_ref().reservation_ids.len()))]
    async fn pay_reservation(
        &self,
        request: Request<PayReservationRequest>,
    ) -> Result<Response<PayReservationResponse>, Status> {
        let deadline = Deadline::from_request(&request);
        let r = request.get_ref();
        let order = order(&r.reservation_id, &r.reservation_ids, self.holds.max_holds)?;
        let key = match r.idempotency_key.as_str() {
            // The first seat's id: a reservation is in one payment only, so this names one.
            "" => format!("reservation:{}", order[0]),
            k => validate::key("idempotency_key", k)?,
        };
        // A token the check refuses may still have paid for this very reservation: the use
        // case then answers that payment (a retry after the token was spent).
        let payer = match self.auth.authenticate_fresh(&request).await {
            Ok(principal) => Payer::Admitted(principal),
            Err(refusal) if refusal.code() == Code::Unauthenticated => Payer::Refused {
                token: self.auth.token_named(request.metadata())?,
                caller: identity::identity(&request).map(|i| i.subject.clone()),
                refusal,
            },
            Err(refusal) => return Err(refusal),
        };
        let spent = match &payer {
            Payer::Admitted(principal) => Some(principal.token),
            Payer::Refused { .. } => None,
        };
        let done = self.payments.pay_as(payer, order, key, deadline).await?;
        if let Some(token) = spent {
            // This replica stops trusting the token at once; other replicas learn it from
            // the queue after their cache TTL, and refuse it meanwhile from `payments`.
            self.auth.forget(token).await;
        }
        Ok(Response::new(paid(&done, self.clock.now())))
    }

    #[tracing::instrument(skip_all)]
    async fn list_payments(
        &self,
        request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let r = request.into_inner();
        let page = self.payment_pages.request(r.page_size, &r.page_token)?;
        let payments = self.payments.list(&user_id, &page).await?;
        let (payments, next_page_token) =
            page.page(payments, |(p, _)| platform::paging::Cursor { at: p.created_at, id: p.payment_id });
        Ok(Response::new(ListPaymentsResponse {
            payments: payments.iter().map(|(p, seats)| payment(p, seats)).collect(),
            next_page_token,
        }))
    }
}

#[tonic::async_trait]
impl ReservationInternalService for ReservationApi {
    type ExportPaymentsStream = futures::stream::Iter<std::vec::IntoIter<Result<ExportPaymentsResponse, Status>>>;

    #[tracing::instrument(skip_all)]
    async fn export_payments(
        &self,
        _request: Request<ExportPaymentsRequest>,
    ) -> Result<Response<Self::ExportPaymentsStream>, Status> {
        let books = self.payments.books().await?;
        let records: Vec<_> = books.iter().map(|b| payment_record(b, self.payment_max_attempts)).collect();
        let messages: Vec<_> =
            records.chunks(1_000).map(|c| Ok(ExportPaymentsResponse { payments: c.to_vec() })).collect();
        Ok(Response::new(futures::stream::iter(messages)))
    }

    #[tracing::instrument(skip_all, fields(schedules = request.get_ref().schedule_ids.len()))]
    async fn get_occupancy(
        &self,
        request: Request<GetOccupancyRequest>,
    ) -> Result<Response<GetOccupancyResponse>, Status> {
        let ids = validate::uuids("schedule_ids", &request.get_ref().schedule_ids, MAX_OCCUPANCY_SCHEDULES)?;
        let seats = self.holds.occupancy(&ids).await?;
        Ok(Response::new(GetOccupancyResponse { seats: seats.iter().map(occupied).collect() }))
    }

    type WatchOccupancyStream = futures::stream::BoxStream<'static, Result<WatchOccupancyResponse, Status>>;

    #[tracing::instrument(skip_all, fields(schedule_id = %request.get_ref().schedule_id))]
    async fn watch_occupancy(
        &self,
        request: Request<WatchOccupancyRequest>,
    ) -> Result<Response<Self::WatchOccupancyStream>, Status> {
        let schedule = validate::uuid("schedule_id", &request.get_ref().schedule_id)?;
        let readings = self.seat_feed.watch(schedule)?;
        Ok(Response::new(Box::pin(futures::StreamExt::map(readings, |reading| {
            reading
                .map(|seats| WatchOccupancyResponse { seats: seats.iter().map(occupied).collect() })
                .map_err(Status::from)
        }))))
    }
}
