//! `limactl generate-jsonschema`

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_a: Args) -> anyhow::Result<i32> {
    crate::out!("{}", crate::spec::schema::schema_text())?;
    Ok(0)
}
