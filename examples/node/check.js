// Calling authz from Node: one check, then two writes the server refuses, with their details decoded.
//
//   AUTHZ_TARGET=127.0.0.1:50051 node check.js      (AUTHZ_TOKEN=<token> when the server has a callers file)
//
// The service is loaded from the repository's proto at run time (@grpc/proto-loader), so nothing is
// generated. An error's details travel as a google.rpc.Status in the `grpc-status-details-bin`
// trailer: INVALID_ARGUMENT carries a google.rpc.BadRequest listing every violation; a refusal by
// the service's rules with another status, a google.rpc.ErrorInfo whose `reason` is stable (branch
// on it, never on the message).
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const PROTO = process.env.AUTHZ_PROTO || path.join(__dirname, "..", "..", "protos", "authz", "v1", "authz.proto");
const TARGET = process.env.AUTHZ_TARGET || "127.0.0.1:50051";

// google.rpc's three messages, as googleapis defines them (google/rpc/status.proto, error_details.proto).
const rpc = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
  message BadRequest {
    message FieldViolation { string field = 1; string description = 2; }
    repeated FieldViolation field_violations = 1;
  }
`).root;
const Status = rpc.lookupType("google.rpc.Status");

/** The details of a failed call, each as {type, ...fields}: BadRequest and ErrorInfo decoded. */
function errorDetails(error) {
  const raw = error.metadata ? error.metadata.get("grpc-status-details-bin") : [];
  if (raw.length === 0) return [];
  const status = Status.decode(raw[0]);
  return status.details.map((any) => {
    const type = any.typeUrl.split("/").pop();
    try {
      const message = rpc.lookupType(type);
      return { type, ...message.toObject(message.decode(any.value)) };
    } catch {
      return { type }; // a detail this example does not know
    }
  });
}

function client() {
  const definition = protoLoader.loadSync(PROTO, { keepCase: false, enums: String, longs: String, defaults: false });
  const { AuthzService } = grpc.loadPackageDefinition(definition).authz.v1;
  return new AuthzService(TARGET, grpc.credentials.createInsecure());
}

function metadata() {
  const md = new grpc.Metadata();
  if (process.env.AUTHZ_TOKEN) md.set("authorization", `Bearer ${process.env.AUTHZ_TOKEN}`);
  return md;
}

/** One unary call as a promise; a 10 s deadline, as every call should have. */
function call(stub, method, request) {
  return new Promise((resolve, reject) => {
    stub[method](request, metadata(), { deadline: Date.now() + 10_000 }, (error, answer) =>
      error ? reject(error) : resolve(answer),
    );
  });
}

/** A write expected to fail: prints its status and decoded details. */
async function refused(stub, label, method, request) {
  try {
    await call(stub, method, request);
    throw new Error(`${label}: the server accepted it`);
  } catch (error) {
    if (error.code === undefined) throw error;
    console.log(`${label}: ${grpc.status[error.code]} ${error.details}`);
    for (const detail of errorDetails(error)) {
      if (detail.type === "google.rpc.BadRequest") {
        for (const v of detail.fieldViolations) console.log(`  violation ${v.field}: ${v.description}`);
      } else if (detail.type === "google.rpc.ErrorInfo") {
        console.log(`  reason ${detail.reason} (${detail.domain})`);
      } else {
        console.log(`  detail ${detail.type}`);
      }
    }
  }
}

async function main() {
  const stub = client();
  const check = await call(stub, "CheckAccess", {
    principalId: "C-PR",
    organizationId: "ORG-SQC",
    subject: "relations",
    right: "RIGHT_WRITE",
    explain: true,
  });
  console.log(`CheckAccess C-PR relations write on ORG-SQC: allowed=${Boolean(check.allowed)} revision=${check.revision}`);

  // No attestation boxes ticked: INVALID_ARGUMENT, each violation named.
  await refused(stub, "GrantRelation without attestation", "GrantRelation", {
    actorId: "C-PR",
    organizationId: "ORG-SQC",
    contactId: "C-IND",
    role: "ROLE_MEMBRE_DU_PERSONNEL",
  });
  // An actor who does not manage the organization: PERMISSION_DENIED with an ErrorInfo reason.
  await refused(stub, "GrantRelation by C-IND", "GrantRelation", {
    actorId: "C-IND",
    organizationId: "ORG-SQC",
    contactId: "C-PR",
    role: "ROLE_MEMBRE_DU_PERSONNEL",
    attestation: { authorizesActing: true, changesAccurate: true },
  });
  stub.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
