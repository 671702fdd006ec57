module orgplane.dev/clients/go

go 1.19

// Minimum versions: the ones CI builds and tests this module with (Debian bookworm's packages,
// see README.md). Newer releases work too; the generated code needs protobuf >= 1.28 (APIv2)
// and grpc >= 1.32 (grpc.SupportPackageIsVersion7).
require (
	google.golang.org/genproto v0.0.0-20200806141610-86f49bd18e98
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)

require github.com/golang/protobuf v1.5.2 // indirect
