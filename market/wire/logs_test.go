package wire_test

import (
	"testing"

	"github.com/offload-project/offload/market/wire"
)

func TestLogsMessagesValidate(t *testing.T) {
	for _, bad := range []string{
		`{"task":"","attempt":1}`, `{"task":"a b"}`, `{"task":"a","attempt":-1}`, `{"task":"a","from":-5}`,
	} {
		if _, err := wire.Decode[wire.LogsRequest]([]byte(bad)); err == nil {
			t.Errorf("logs request %s accepted", bad)
		}
	}
	if _, err := wire.Decode[wire.LogsRequest]([]byte(`{"task":"a1","attempt":2,"from":10,"follow":true}`)); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{`{"stream":"stdin"}`, `{"offset":-1}`, `{"skipped":-2}`} {
		if _, err := wire.Decode[wire.LogChunk]([]byte(bad)); err == nil {
			t.Errorf("chunk %s accepted", bad)
		}
	}
	big := make([]byte, wire.MaxLogChunkData+1)
	if err := (&wire.LogChunk{Stream: wire.LogStdout, Data: big}).Validate(); err == nil {
		t.Error("oversized chunk accepted")
	}
}

func FuzzDecodeLogsRequest(f *testing.F) {
	fuzzDecode[wire.LogsRequest](f, `{"task":"a","attempt":1,"from":0,"follow":true}`, `{}`)
}

func FuzzDecodeLogChunk(f *testing.F) {
	fuzzDecode[wire.LogChunk](f, `{"stream":"stdout","offset":3,"data":"aGkK"}`, `{"end":true,"error":"gone"}`, `{"offset":5,"skipped":2}`)
}
