"""One module per use case: `Command(deps).execute(request) -> result`. No gRPC here."""
