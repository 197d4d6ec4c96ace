//! What the VM's tests share: compiling a flow from memory.

use std::sync::Arc;

use ivr_compiler::{compile, MemoryWorld};
use ivr_vm::Program;

/// Compiles `src` with `catalogue` as its prompts; a flow with errors fails the test.
pub fn compile_flow(src: &str, catalogue: &str) -> Arc<Program> {
    let world = MemoryWorld::new().with("main.ivr", src).with("prompts.toml", catalogue);
    let c = compile(&world, "main.ivr");
    assert!(!c.has_errors(), "{:#?}", c.diagnostics);
    Arc::new(c.program.expect("a program"))
}
