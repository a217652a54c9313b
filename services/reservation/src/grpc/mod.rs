//! gRPC handlers of the reservation service.
mod convert;

use chrono::Duration;
use concert_proto::concert::reservation::v1::{
    CancelReservationRequest, CancelReservationResponse, ExportPaymentsRequest, ExportPaymentsResponse,
    GetOccupancyRequest, GetOccupancyResponse, GetReservationRequest, GetReservationResponse, HoldSeatRequest,
    HoldSeatResponse, ListPaymentsRequest, ListPaymentsResponse, ListReservationsRequest, ListReservationsResponse,
    PayReservationRequest, PayReservationResponse, reservation_internal_service_server::ReservationInternalService,
    reservation_service_server::ReservationService,
};
use platform::{
    auth::{TokenValidator, queue_token},
    clock::SharedClock,
    identity,
    outbound::Deadline,
    validate,
};
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use crate::{
    batch::holds::HoldBatcher,
    batch::payment_starts::PaymentStartBatcher,
    clients::Catalog,
    domain::{DebitRefusal, Payment, PaymentStatus, Reservation, ReservationStatus},
    error::ReservationError,
    service::saga::Saga,
    service::taken_seats::TakenSeats,
    store::{HoldAttempt, NewHold, PaymentRequest, PaymentStart, ReservationRepo},
};
use convert::{occupied, payment, payment_record, reservation, seat_number};

/// Most schedules one occupancy lookup may name.
const MAX_OCCUPANCY_SCHEDULES: usize = 1_000;

/// Implements the public and the internal reservation API. Built by `app::run`, which owns
/// the background tasks of the batchers and clients it holds.
#[derive(Debug, Clone)]
pub struct ReservationApi {
    pub(crate) repo: ReservationRepo,
    pub(crate) auth: TokenValidator,
    pub(crate) catalog: Catalog,
    pub(crate) saga: Saga,
    pub(crate) clock: SharedClock,
    pub(crate) taken: TakenSeats,
    pub(crate) holds: HoldBatcher,
    pub(crate) payments: PaymentStartBatcher,
    /// How long a hold keeps its seat.
    pub(crate) hold_ttl: Duration,
    /// Most live holds per user and concert.
    pub(crate) max_holds: u32,
    /// How long a started payment is left to its request before recovery may take it.
    pub(crate) payment_lease: Duration,
    /// The recovery worker's limit of tries (reported by ExportPayments).
    pub(crate) payment_max_attempts: i32,
}

impl ReservationApi {
    /// The response for a payment whose saga has run as far as it can now. `paid_for` is the
    /// reservation as this call locked it when it started the saga (saves a read); replays
    /// read it again.
    async fn payment_result(
        &self,
        p: Payment,
        paid_for: Option<Reservation>,
    ) -> Result<PayReservationResponse, ReservationError> {
        match p.status {
            PaymentStatus::Completed | PaymentStatus::Confirmed => {
                let r = match paid_for {
                    // The saga confirmed it: the seat is sold and stays sold.
                    Some(r) => Reservation { status: ReservationStatus::Confirmed, ..r },
                    None => self.repo.get(p.reservation_id).await?,
                };
                Ok(PayReservationResponse {
                    payment: Some(payment(&p)),
                    reservation: Some(reservation(&r, self.clock.now())),
                    balance_after: p.balance_after.map(|b| b.get()).unwrap_or_default(),
                })
            }
            PaymentStatus::Failed | PaymentStatus::Compensated
                if p.failure_reason == Some(DebitRefusal::InsufficientBalance) =>
            {
                Err(ReservationError::InsufficientBalance)
            }
            PaymentStatus::Failed | PaymentStatus::Compensated => Err(ReservationError::NotHeld),
            // The saga stopped short without an error only if another driver holds it.
            PaymentStatus::Started | PaymentStatus::Compensating => Err(ReservationError::PaymentInProgress),
        }
    }

    /// A call whose token no longer authenticates (expired by the very payment asked about,
    /// or by its TTL) for a reservation that token already pays for: whatever the key, the
    /// answer is that payment's outcome (resumed first if unfinished), not a token error.
    async fn answer_existing_payment(
        &self,
        token: Uuid,
        caller: Option<String>,
        reservation_id: Uuid,
        deadline: Deadline,
    ) -> Result<Option<PayReservationResponse>, ReservationError> {
        let Some(p) = self.repo.payment_by_token(reservation_id, token).await? else {
            return Ok(None);
        };
        // Only the payer learns the outcome through a spent token.
        if caller.is_some_and(|caller| caller != p.user_id) {
            return Ok(None);
        }
        let p = if p.status.next_step() == crate::domain::SagaStep::Done {
            p
        } else {
            self.saga.drive(p, deadline).await?
        };
        Ok(Some(self.payment_result(p, None).await?))
    }
}

#[tonic::async_trait]
impl ReservationService for ReservationApi {
    #[tracing::instrument(skip_all, fields(schedule_id = %request.get_ref().schedule_id, seat = request.get_ref().seat_number))]
    async fn hold_seat(&self, request: Request<HoldSeatRequest>) -> Result<Response<HoldSeatResponse>, Status> {
        let principal = self.auth.authenticate_fresh(&request).await?;
        let r = request.into_inner();
        let schedule_id = validate::uuid("schedule_id", &r.schedule_id)?;
        let seat = seat_number(r.seat_number)?;
        // The layout is cached (immutable), so the concert check costs no round trip.
        let info = self.catalog.seat(schedule_id, seat).await?;
        principal.require_concert(info.concert_id)?;
        if self.taken.is_taken(schedule_id, seat, self.clock.now()) {
            return Err(ReservationError::SeatUnavailable.into());
        }
        let now = self.clock.now();
        if info.starts_at <= now {
            return Err(ReservationError::ScheduleStarted.into());
        }
        let attempt = crate::service::hold::place_hold(
            &self.repo,
            &self.holds,
            &NewHold {
                user_id: principal.user_id,
                token: principal.token,
                concert_id: info.concert_id,
                schedule_id,
                seat_number: seat,
                price: info.price,
                now,
                ttl: self.hold_ttl,
                max_holds: self.max_holds,
            },
        )
        .await?;
        match attempt {
            HoldAttempt::Held(held) => {
                Ok(Response::new(HoldSeatResponse { reservation: Some(reservation(&held, now)) }))
            }
            HoldAttempt::Taken { blocked_until } => {
                self.taken.mark(schedule_id, seat, blocked_until);
                Err(ReservationError::SeatUnavailable.into())
            }
        }
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn get_reservation(
        &self,
        request: Request<GetReservationRequest>,
    ) -> Result<Response<GetReservationResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let r = request.into_inner();
        let id = validate::uuid("reservation_id", &r.reservation_id)?;
        let found = self.repo.get(id).await?;
        found.check_owner(&user_id)?;
        Ok(Response::new(GetReservationResponse { reservation: Some(reservation(&found, self.clock.now())) }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_reservations(
        &self,
        request: Request<ListReservationsRequest>,
    ) -> Result<Response<ListReservationsResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let r = request.into_inner();
        let page = platform::paging::page_request(r.page_size, &r.page_token)?;
        let now = self.clock.now();
        let list = self.repo.list_for_user(&user_id, &page).await?;
        let (list, next_page_token) =
            page.page(list, |r| platform::paging::Cursor { at: r.held_at, id: r.reservation_id });
        Ok(Response::new(ListReservationsResponse {
            reservations: list.iter().map(|r| reservation(r, now)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn cancel_reservation(
        &self,
        request: Request<CancelReservationRequest>,
    ) -> Result<Response<CancelReservationResponse>, Status> {
        let principal = self.auth.authenticate_fresh(&request).await?;
        let id = validate::uuid("reservation_id", &request.get_ref().reservation_id)?;
        let now = self.clock.now();
        let cancelled = self.repo.cancel(id, &principal.user_id, principal.concert_id, now).await?;
        self.taken.forget(cancelled.schedule_id, cancelled.seat_number);
        Ok(Response::new(CancelReservationResponse { reservation: Some(reservation(&cancelled, now)) }))
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn pay_reservation(
        &self,
        request: Request<PayReservationRequest>,
    ) -> Result<Response<PayReservationResponse>, Status> {
        let deadline = Deadline::from_request(&request);
        let reservation_id = validate::uuid("reservation_id", &request.get_ref().reservation_id)?;
        let key = match request.get_ref().idempotency_key.as_str() {
            "" => format!("reservation:{reservation_id}"),
            k => validate::key("idempotency_key", k)?,
        };
        let principal = match self.auth.authenticate_fresh(&request).await {
            Ok(p) => p,
            Err(status) if status.code() == Code::Unauthenticated => {
                let token = queue_token(request.metadata())?;
                let caller = identity::identity(&request).map(|i| i.subject.clone());
                return match self.answer_existing_payment(token, caller, reservation_id, deadline).await? {
                    Some(done) => Ok(Response::new(done)),
                    None => Err(status),
                };
            }
            Err(status) => return Err(status),
        };
        let now = self.clock.now();
        let request = PaymentRequest { reservation_id, payer: principal.clone(), key, now, lease: self.payment_lease };
        let started = self.payments.start_payment(request).await?;
        let (payment, paid_for) = match started {
            PaymentStart::New(p, r) => (p, Some(r)),
            PaymentStart::Existing(p) => (p, None),
        };
        let finished = self.saga.drive(payment, deadline).await?;
        if finished.status.is_paid() {
            // This replica stops trusting the token at once; other replicas learn it from
            // the queue after their cache TTL, and refuse it meanwhile from `payments`.
            self.auth.forget(principal.token).await;
        }
        Ok(Response::new(self.payment_result(finished, paid_for).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn list_payments(
        &self,
        request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let r = request.into_inner();
        let page = platform::paging::page_request(r.page_size, &r.page_token)?;
        let payments = self.repo.payments_of(&user_id, &page).await?;
        let (payments, next_page_token) =
            page.page(payments, |p| platform::paging::Cursor { at: p.created_at, id: p.payment_id });
        Ok(Response::new(ListPaymentsResponse { payments: payments.iter().map(payment).collect(), next_page_token }))
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
        let books = self.repo.payment_books().await?;
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
        let seats = self.repo.occupancy(&ids, self.clock.now()).await?;
        Ok(Response::new(GetOccupancyResponse { seats: seats.iter().map(occupied).collect() }))
    }
}
