//! Prints a firmware defmt log as text: `defmt-log ELF LOGFILE`.
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, elf, log] = &args[..] else { anyhow::bail!("usage: defmt-log ELF LOGFILE") };
    for line in hil_tests::decode_log(elf.as_ref(), &std::fs::read(log)?)? {
        println!("{line}");
    }
    Ok(())
}
