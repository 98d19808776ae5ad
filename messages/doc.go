// Package messages holds the protobuf wire contract of Tolerex: the messages
// actors exchange (locally and over protoactor's remote layer) and the
// leader's durable metadata log entries. The Go code is generated from
// tolerex.proto by `make generate` and committed.
package messages
