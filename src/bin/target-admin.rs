//! `target-admin`: manages a running `ringsand`. The control API it talks to arrives with its own
//! issue; until then it only reports that.

fn main() {
    eprintln!("target-admin: the control API is not implemented yet (see the target-admin issue)");
    std::process::exit(2);
}
