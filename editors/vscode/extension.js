// Starts `ivr lsp` for .ivr files: diagnostics as you type (the checker's
// codes), go to definition, find references, hover, completion.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("ivr").get("path") || "ivr";
  const server = { command, args: ["lsp"] };
  client = new LanguageClient("ivr", "IVR flows", { run: server, debug: server }, {
    documentSelector: [{ scheme: "file", language: "ivr" }],
  });
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
