module otel-run.example/uprobe-go

go 1.21
