package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/coalitionexchange/coalition/gateway"
)

func TestParsePartnerRates(t *testing.T) {
	got, err := parsePartnerRates(map[string]string{"acme-air": "500:1000", "bean-coffee": "50"})
	want := map[string]gateway.PartnerRate{"acme-air": {PerSecond: 500, Burst: 1000}, "bean-coffee": {PerSecond: 50}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parsePartnerRates: %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"", "0", "-5", "fast", "5:", "5:x", "5:-1", "5:1:2"} {
		_, err := parsePartnerRates(map[string]string{"acme-air": bad})
		if err == nil || !strings.Contains(err.Error(), "--partner-rate-limits acme-air="+bad) {
			t.Errorf("acme-air=%q: %v; want an error naming the flag and the entry", bad, err)
		}
	}
}
