//! `concertctl`: seed demo data, walk the demo journey, wait for the suite to be healthy,
//! and generate load over real gRPC.
mod bench;
mod demo;

use concertctl::{clients, seed};

use clap::{Parser, Subcommand};

use concertctl::clients::Endpoints;

#[derive(Debug, Parser)]
#[command(name = "concertctl", version, about = "Concert ticketing suite: seed, demo, benchmarks, access tokens")]
struct Cli {
    #[command(flatten)]
    endpoints: Endpoints,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Waits until all four services report SERVING (health service) on both ports.
    Wait {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
        /// Only this service (a container's health check).
        #[arg(long, value_parser = ["queue", "catalog", "reservation", "wallet"])]
        only: Option<String>,
    },
    /// Creates the demo concerts (2 concerts × 3 dates × 50 seats) unless they exist.
    Seed,
    /// Walks the whole journey as a fresh user, printing each step.
    Demo,
    /// Load benchmarks over real gRPC.
    Bench(bench::BenchArgs),
    /// Reconciles every wallet balance with its ledger; exits 1 on any mismatch.
    Audit,
    /// Lists the concerts (id, title, venue; tab-separated), from the public catalog.
    Concerts,
    /// Prints an access token (JWT) for `user`, signed with the signing key (by default the
    /// DEV-ONLY key in deploy/dev-auth/), for calling the suite by hand.
    Token {
        /// The user the token names (its `sub`).
        #[arg(long)]
        user: String,
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..=86_400 * 30))]
        ttl_secs: u64,
    },
    /// Prints the JWKS (public keys) that verifies tokens of the signing key.
    Jwks,
    /// Sets a concert's admission policy (QueueAdminService.SetAdmissionPolicy); a value not
    /// given falls back to the queue's default (QUEUE_MAX_ACTIVE, ...). Prints the policy.
    Policy {
        /// The concert (UUID, as `concertctl concerts` lists it).
        #[arg(long)]
        concert: String,
        /// Most ACTIVE (admitted) tokens at once, 1..=1,000,000; lowered below the active
        /// count, nobody is admitted until enough of them leave.
        #[arg(long)]
        max_active: Option<u64>,
        /// Most admissions per second.
        #[arg(long)]
        admit_per_sec: Option<u64>,
        /// Seconds an admitted token stays ACTIVE.
        #[arg(long)]
        active_ttl_secs: Option<u64>,
    },
    /// Reconciles the wallet's ledger with reservation's payments (every won and every seat
    /// accounted for, per payment and per user); exits 1 on any violation.
    Reconcile {
        /// Also fail while payments are still under way or need a person.
        #[arg(long)]
        settled: bool,
    },
}

/// mimalloc, not glibc malloc: the rush keeps a task, buffers and timers for each of up to a
/// million simulated people, and glibc's allocator took a fifth of the generator's CPU in a
/// flood's profile (docs/BENCHMARKS.md, "The flood"), CPU the suite it measures then lacks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let clients = cli.endpoints.connect()?;
    match cli.command {
        Command::Wait { timeout_secs, only } => {
            clients.wait_healthy(std::time::Duration::from_secs(timeout_secs), only.as_deref()).await
        }
        Command::Seed => seed::run(&clients).await,
        Command::Demo => demo::run(&clients).await,
        Command::Bench(args) => bench::run(&clients, args).await,
        Command::Audit => audit(&clients).await,
        Command::Reconcile { settled } => reconcile(&clients, settled).await,
        Command::Policy { concert, max_active, admit_per_sec, active_ttl_secs } => {
            use concert_proto::concert::queue::v1::SetAdmissionPolicyRequest;
            let request = SetAdmissionPolicyRequest {
                concert_id: concert,
                max_active,
                admit_per_sec,
                active_ttl_seconds: active_ttl_secs,
            };
            let policy = clients.queue_admin().set_admission_policy(request).await?.into_inner().policy;
            println!("{policy:?}");
            Ok(())
        }
        Command::Token { user, ttl_secs } => {
            platform::validate::key("user", &user).map_err(|v| anyhow::anyhow!("--{v}"))?;
            println!("{}", clients.minter()?.access_token(&user, std::time::Duration::from_secs(ttl_secs))?);
            Ok(())
        }
        Command::Concerts => {
            for c in clients.all_concerts().await? {
                println!("{}\t{}\t{}", c.concert_id, c.title, c.venue);
            }
            Ok(())
        }
        Command::Jwks => {
            println!("{}", clients.minter()?.jwks()?);
            Ok(())
        }
    }
}

async fn reconcile(clients: &clients::Clients, settled: bool) -> anyhow::Result<()> {
    let report =
        concertctl::reconcile::fetch_and_reconcile(clients.wallet_internal(), clients.reservation_internal()).await?;
    println!("{report}");
    anyhow::ensure!(report.is_clean(), "{} violations", report.violations.len());
    anyhow::ensure!(!settled || report.is_settled(), "payments are still under way or need a person");
    Ok(())
}

async fn audit(clients: &clients::Clients) -> anyhow::Result<()> {
    use concert_proto::concert::wallet::v1::AuditRequest;
    let report = clients.wallet_internal().audit(AuditRequest {}).await?.into_inner();
    println!(
        "audit: {} wallets; charged {} won, debited {} won, refunded {} won; balances {} won",
        report.accounts, report.total_charged, report.total_debited, report.total_refunded, report.total_balance
    );
    for m in &report.mismatches {
        println!("MISMATCH {}: balance {} won, ledger {} won", m.user_id, m.balance, m.ledger_sum);
    }
    anyhow::ensure!(report.mismatches.is_empty(), "{} wallets disagree with their ledger", report.mismatches.len());
    println!("audit: every balance equals its ledger");
    Ok(())
}
