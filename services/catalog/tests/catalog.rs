//! Catalog RPCs that need no peers (admin, internal, public listing, token refusal),
//! against a real server and a fresh database per test. Protected reads with live seat
//! status are covered end to end in the e2e crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use catalog_service::{app, config::Settings};
use concert_proto::concert::catalog::v1::{
    self as pb, AddScheduleRequest, CreateConcertRequest, GetConcertRequest, GetScheduleSeatsRequest, GradePricing,
    ListConcertsRequest, ListSeatsRequest, catalog_admin_service_client::CatalogAdminServiceClient,
    catalog_internal_service_client::CatalogInternalServiceClient, catalog_service_client::CatalogServiceClient,
};
use platform::{
    convert::timestamp,
    status::{reason, violated_field},
    testing::RunningServer,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::{Code, Request};

struct App {
    _server: RunningServer,
    public: CatalogServiceClient<platform::grpc_client::PeerChannel>,
    admin: CatalogAdminServiceClient<platform::grpc_client::PeerChannel>,
    internal: CatalogInternalServiceClient<platform::grpc_client::PeerChannel>,
}

async fn spawn(db: PgConnectOptions) -> App {
    // Peers point at a closed port: calls that need them surface UNAVAILABLE.
    let settings = Settings {
        db: db.into(),
        max_connections: 5,
        limits: platform::server::Limits::default(),
        auth: platform::identity::AuthSettings::Disabled,
        queue_url: "http://127.0.0.1:9".into(),
        reservation_url: "http://127.0.0.1:9".into(),
        token_cache_ttl: std::time::Duration::from_secs(1),
        passes: None,
        layout_cache_ttl: std::time::Duration::from_secs(300),
        seat_status_ttl: std::time::Duration::from_millis(100),
        seat_map_max_streams: 100,
        seat_map_stream_lifetime: std::time::Duration::from_secs(600),
        clock: platform::clock::system(),
    };
    let server = RunningServer::start(|l, s| app::run(settings, l, s)).await;
    App {
        public: CatalogServiceClient::new(server.channel()),
        admin: CatalogAdminServiceClient::new(server.internal_channel()),
        internal: CatalogInternalServiceClient::new(server.internal_channel()),
        _server: server,
    }
}

fn grades() -> Vec<GradePricing> {
    vec![
        GradePricing { grade: "VIP".into(), first_seat: 1, last_seat: 10, price: 150_000 },
        GradePricing { grade: "R".into(), first_seat: 11, last_seat: 50, price: 100_000 },
    ]
}

fn schedule(concert_id: &str, grades: Vec<GradePricing>) -> AddScheduleRequest {
    AddScheduleRequest {
        concert_id: concert_id.into(),
        starts_at: Some(timestamp(chrono::Utc::now() + chrono::Duration::days(3))),
        grades,
    }
}

#[sqlx::test(migrations = false)]
async fn admin_creates_concerts_and_fifty_seat_schedules(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    let concert = app
        .admin
        .create_concert(CreateConcertRequest {
            title: "  Opening Night ".into(),
            venue: "Olympic Hall".into(),
            sale_opens_at: None,
        })
        .await
        .unwrap()
        .into_inner()
        .concert
        .unwrap();
    assert_eq!(concert.title, "Opening Night");
    let created = app.admin.add_schedule(schedule(&concert.concert_id, grades())).await.unwrap().into_inner();
    assert_eq!(created.seats.len(), 50);
    assert_eq!(created.schedule.as_ref().unwrap().available_seats, 50);
    let schedule_id = created.schedule.unwrap().schedule_id;

    // A second, later date with other prices: the list gives the dates' span and the price
    // range over both.
    let cheap = vec![
        GradePricing { grade: "VIP".into(), first_seat: 1, last_seat: 10, price: 170_000 },
        GradePricing { grade: "S".into(), first_seat: 11, last_seat: 50, price: 60_000 },
    ];
    let second_at = chrono::Utc::now() + chrono::Duration::days(5);
    let second = AddScheduleRequest { starts_at: Some(timestamp(second_at)), ..schedule(&concert.concert_id, cheap) };
    app.admin.add_schedule(second).await.unwrap();
    let listed = app.public.list_concerts(ListConcertsRequest::default()).await.unwrap().into_inner().concerts;
    assert_eq!(listed.len(), 1);
    let shown = &listed[0];
    assert_eq!((shown.upcoming_dates, shown.price_from, shown.price_to), (2, 60_000, 170_000));
    assert!(shown.first_starts_at.unwrap().seconds < shown.last_starts_at.unwrap().seconds);
    assert_eq!(shown.last_starts_at.unwrap().seconds, second_at.timestamp());
    assert_eq!(
        pb::Concert {
            upcoming_dates: 0,
            first_starts_at: None,
            last_starts_at: None,
            price_from: 0,
            price_to: 0,
            ..shown.clone()
        },
        concert,
        "the rest is the concert as created"
    );

    let layout = app
        .internal
        .get_schedule_seats(GetScheduleSeatsRequest { schedule_id: schedule_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(layout.schedule.unwrap().schedule_id, schedule_id);
    assert_eq!(layout.seats.len(), 50);
    assert_eq!((layout.seats[9].grade.as_str(), layout.seats[9].price), ("VIP", 150_000));
    assert_eq!((layout.seats[10].grade.as_str(), layout.seats[10].price), ("R", 100_000));

    // A concert with a sale time: listed with it, and readable one by one (the queue's view).
    let opens = platform::convert::timestamp(chrono::Utc::now() + chrono::Duration::hours(2));
    let later = app
        .admin
        .create_concert(CreateConcertRequest {
            title: "Later".into(),
            venue: String::new(),
            sale_opens_at: Some(opens),
        })
        .await
        .unwrap()
        .into_inner()
        .concert
        .unwrap();
    assert_eq!(later.sale_opens_at.map(|t| t.seconds), Some(opens.seconds));
    let read = app
        .internal
        .get_concert(GetConcertRequest { concert_id: later.concert_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .concert
        .unwrap();
    assert_eq!(read, later);
    // A concert with no date yet: listed with no span and no prices.
    let listed = app.public.list_concerts(ListConcertsRequest::default()).await.unwrap().into_inner().concerts;
    let shown = listed.iter().find(|c| c.concert_id == later.concert_id).unwrap();
    assert_eq!((shown.upcoming_dates, shown.first_starts_at, shown.price_from, shown.price_to), (0, None, 0, 0));
    let unknown = GetConcertRequest { concert_id: uuid::Uuid::new_v4().to_string() };
    assert_eq!(app.internal.get_concert(unknown).await.unwrap_err().code(), Code::NotFound);
    let bad = GetConcertRequest { concert_id: "nope".into() };
    assert_eq!(app.internal.get_concert(bad).await.unwrap_err().code(), Code::InvalidArgument);
}

#[sqlx::test(migrations = false)]
async fn bad_layouts_and_ids_are_refused(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    let err = app
        .admin
        .create_concert(CreateConcertRequest { title: " ".into(), venue: String::new(), sale_opens_at: None })
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("title"));
    let concert = app
        .admin
        .create_concert(CreateConcertRequest { title: "T".into(), venue: String::new(), sale_opens_at: None })
        .await
        .unwrap()
        .into_inner()
        .concert
        .unwrap();

    let mut gap = grades();
    gap[1].last_seat = 49;
    let mut overlap = grades();
    overlap[1].first_seat = 10;
    let mut free = grades();
    free[0].price = 0;
    let mut too_dear = grades();
    too_dear[0].price = 10_000_001;
    for (bad, field) in
        [(gap, "grades"), (overlap, "grades"), (vec![], "grades"), (free, "grades.price"), (too_dear, "grades.price")]
    {
        let err = app.admin.add_schedule(schedule(&concert.concert_id, bad)).await.unwrap_err();
        assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some(field)));
    }
    let mut no_time = schedule(&concert.concert_id, grades());
    no_time.starts_at = None;
    let err = app.admin.add_schedule(no_time).await.unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("starts_at"));
    let err = app.admin.add_schedule(schedule(&uuid::Uuid::new_v4().to_string(), grades())).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::NotFound, Some("CONCERT_NOT_FOUND")));

    let err = app
        .internal
        .get_schedule_seats(GetScheduleSeatsRequest { schedule_id: uuid::Uuid::new_v4().to_string() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = app.internal.get_schedule_seats(GetScheduleSeatsRequest { schedule_id: "x".into() }).await.unwrap_err();
    assert_eq!(violated_field(&err).as_deref(), Some("schedule_id"));
}

#[sqlx::test(migrations = false)]
async fn protected_reads_refuse_missing_tokens_and_report_an_unreachable_queue(
    _p: PgPoolOptions,
    db: PgConnectOptions,
) {
    let mut app = spawn(db).await;
    let err = app.public.list_seats(Request::new(ListSeatsRequest { schedule_id: "x".into() })).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut with_token = Request::new(ListSeatsRequest { schedule_id: uuid::Uuid::new_v4().to_string() });
    with_token.metadata_mut().insert("x-queue-token", uuid::Uuid::new_v4().to_string().parse().unwrap());
    let err = app.public.list_seats(with_token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "queue is down: retryable, not INTERNAL");
}

/// Issue #12, item 10: text with a NUL byte or a line break, timestamps outside a protobuf
/// Timestamp's range (years 1..=9999) and a schedule in the past are bad input naming the
/// field, never INTERNAL.
#[sqlx::test(migrations = false)]
async fn hostile_text_and_times_are_refused_naming_the_field(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut app = spawn(db).await;
    let create = |title: &str, venue: &str, sale_opens_at: Option<prost_types::Timestamp>| CreateConcertRequest {
        title: title.into(),
        venue: venue.into(),
        sale_opens_at,
    };
    for (request, field) in [
        (create("Night\0Show", "Hall", None), "title"),
        (create("Night", "Hall\0", None), "venue"),
        (create("Night", "Hall\nB", None), "venue"),
        (create("Night", "Hall", Some(prost_types::Timestamp { seconds: -62_135_596_801, nanos: 0 })), "sale_opens_at"),
        (create("Night", "Hall", Some(prost_types::Timestamp { seconds: 253_402_300_800, nanos: 0 })), "sale_opens_at"),
    ] {
        let err = app.admin.create_concert(request).await.unwrap_err();
        assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some(field)), "{err:?}");
    }
    let concert_id =
        app.admin.create_concert(create("Night", "Hall", None)).await.unwrap().into_inner().concert.unwrap().concert_id;
    let mut nul_grade = grades();
    nul_grade[0].grade = "V\0IP".into();
    let err = app.admin.add_schedule(schedule(&concert_id, nul_grade)).await.unwrap_err();
    assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("grades")));
    for starts_at in [
        prost_types::Timestamp { seconds: -62_135_596_801, nanos: 0 },
        timestamp(chrono::Utc::now() - chrono::Duration::minutes(1)),
    ] {
        let request = AddScheduleRequest { starts_at: Some(starts_at), ..schedule(&concert_id, grades()) };
        let err = app.admin.add_schedule(request).await.unwrap_err();
        assert_eq!((err.code(), violated_field(&err).as_deref()), (Code::InvalidArgument, Some("starts_at")));
    }
}

/// Issue #12, item 10: while the database cannot be reached, reads answer UNAVAILABLE
/// (reason DATABASE_UNAVAILABLE), a status a client retries, not INTERNAL.
#[sqlx::test(migrations = false)]
async fn a_database_outage_is_unavailable_not_internal(_p: PgPoolOptions, db: PgConnectOptions) {
    let target = format!("{}:{}", db.get_host(), db.get_port());
    let target = tokio::net::lookup_host(target).await.unwrap().next().unwrap();
    let proxy = platform::testing::TcpProxy::start(target).await;
    let mut app = spawn(db.host("127.0.0.1").port(proxy.addr.port())).await;
    let concert_id = app
        .admin
        .create_concert(CreateConcertRequest { title: "Outage".into(), venue: String::new(), sale_opens_at: None })
        .await
        .unwrap()
        .into_inner()
        .concert
        .unwrap()
        .concert_id;
    let schedule_id = app
        .admin
        .add_schedule(schedule(&concert_id, grades()))
        .await
        .unwrap()
        .into_inner()
        .schedule
        .unwrap()
        .schedule_id;

    proxy.cut();
    // The pool waits for a connection up to its acquire timeout (5 s) before answering.
    let patient = |url: String| {
        let endpoint =
            tonic::transport::Endpoint::from_shared(url).unwrap().timeout(std::time::Duration::from_secs(20));
        platform::grpc_client::traced(endpoint.connect_lazy())
    };
    app.internal = CatalogInternalServiceClient::new(patient(app._server.internal_url()));
    app.public = CatalogServiceClient::new(patient(app._server.url()));
    // The seat layout of this schedule was never read, so it comes from the database.
    let err = app.internal.get_schedule_seats(GetScheduleSeatsRequest { schedule_id }).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::Unavailable, Some("DATABASE_UNAVAILABLE")), "{err:?}");
    let err = app.public.list_concerts(ListConcertsRequest::default()).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_deref()), (Code::Unavailable, Some("DATABASE_UNAVAILABLE")), "{err:?}");

    // Readiness follows the database (the replica asks it every second, 2 s to answer), on
    // both ports; liveness does not, so nothing restarts a replica that waits for its database.
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    for url in [app._server.url(), app._server.internal_url()] {
        let mut ready = health_of(&url, "").await;
        for _ in 0..50 {
            if ready == not_serving {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            ready = health_of(&url, "").await;
        }
        assert_eq!(ready, not_serving, "{url}: readiness with the database down");
        assert_eq!(health_of(&url, platform::server::LIVENESS).await, serving, "{url}: liveness");
    }
    assert_eq!(health_of(&app._server.url(), "concert.catalog.v1.CatalogService").await, not_serving);
}

/// The health status `url`'s server reports for `service` ("" for the whole server).
async fn health_of(url: &str, service: &str) -> i32 {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut health = HealthClient::new(platform::testing::test_channel(url));
    health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status
}
