//! Micro-benchmarks (divan; `cargo bench --bench micro`): the pure work each
//! whole-process figure is made of — spec load + resolve, one plan over
//! 1000 instances, cidata generation with its ISO image. Measured, never
//! asserted.

use std::path::Path;
use std::sync::Arc;

use lima::reconcile::plan::{self, Desired, DesiredConfig, PlanOptions, PowerState};
use lima::spec::{LoadEnv, Resolved, load};
use lima::store::instance::{Instance, Liveness, Present, Status};

fn main() {
    divan::main();
}

const YAML: &str = "images:\n- location: /img/debian.qcow2\n  arch: x86_64\ncpus: 2\nmemory: 2GiB\ndisk: 4GiB\nmounts:\n- location: /tmp/share\n  writable: true\nportForwards:\n- guestPort: 8080\n  hostPort: 18080\ncontainerd: {system: false, user: false}\nssh: {loadDotSSHPubKeys: false}\n";

fn resolve(env: &LoadEnv) -> Resolved {
    let path = Path::new("/bench/vm.yaml");
    let t = load::Template::from_text(path, YAML.to_string());
    let node = load::parse_template(&t).unwrap();
    let mut warnings = Vec::new();
    lima::spec::resolve::resolve(&node, "/bench/vm.yaml", "vm", env, &mut warnings).unwrap()
}

fn env() -> (tempfile::TempDir, LoadEnv) {
    let d = tempfile::tempdir().unwrap();
    let env = LoadEnv::new(d.path());
    (d, env)
}

#[divan::bench]
fn spec_load_and_resolve(b: divan::Bencher) {
    let (_d, env) = env();
    b.bench(|| resolve(&env));
}

#[divan::bench]
fn plan_1000_converged_instances(b: divan::Bencher) {
    let (_d, env) = env();
    let r = resolve(&env);
    let config = Arc::new(DesiredConfig::new(YAML.to_string(), r));
    let pairs: Vec<(Desired, Instance)> = (0..1000)
        .map(|i| {
            let name = format!("vm{i}");
            let inst = Instance {
                name: name.clone(),
                dir: format!("/lh/{name}").into(),
                dir_exists: true,
                present: Present {
                    lima_yaml: true,
                    basedisk: true,
                    diffdisk: true,
                    ..Default::default()
                },
                lima_yaml: None,
                config: Some(config.filled.clone()),
                status: Status::Running,
                errors: vec![],
                liveness: Liveness {
                    host_agent: true,
                    qemu: true,
                },
                host_agent_pid: None,
                driver_pid: None,
                ssh_local_port: 0,
                lima_version: None,
                disk_size: Some(4 << 30),
                owner: Some("/src".into()),
                started: Some(config.filled.clone()),
            };
            let d = Desired {
                name,
                config: Some(config.clone()),
                power: Some(PowerState::Running),
                owner: Some("/src".into()),
                revision: None,
            };
            (d, inst)
        })
        .collect();
    b.bench(|| {
        pairs
            .iter()
            .map(|(d, o)| plan::plan(Some(d), o, &PlanOptions::default()).steps.len())
            .sum::<usize>()
    });
}

#[divan::bench]
fn cidata_generate_and_iso(b: divan::Bencher) {
    let (d, env) = env();
    let r = resolve(&env);
    let keys = vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench".to_string()];
    let host_env = std::collections::BTreeMap::new();
    let iso = d.path().join("cidata.iso");
    b.bench(|| {
        let c = lima::cidata::generate(&lima::cidata::CidataInput {
            spec: &r.spec,
            name: "vm",
            instance_dir: d.path(),
            iid: "iid-1",
            authorized_keys: &keys,
            debug: false,
            host_home: Path::new("/home/bench"),
            host_env: &host_env,
            guest_agent: None,
            containerd_archive: None,
            udp_dns_port: 0,
            tcp_dns_port: 0,
        })
        .unwrap();
        lima::cidata::write_iso(&iso, &c.files).unwrap();
    });
}
