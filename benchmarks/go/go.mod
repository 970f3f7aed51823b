module zokio.local/benchmarks/go

go 1.19
