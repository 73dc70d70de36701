package monitor

import (
	"context"
	"runtime"
	"testing"
	"time"
)

func TestSystemSampler(t *testing.T) {
	s := &SystemSampler{MaxAge: time.Hour}
	st := s.Sample(context.Background())
	if runtime.GOOS == "linux" && len(st.Errors) > 0 {
		t.Fatalf("figures missing on Linux: %v", st.Errors)
	}
	if st.Host.MemoryTotal == 0 || st.Host.CPUs == 0 || st.Process.RSS == 0 || st.Process.OpenFDs == 0 ||
		st.Runtime.Goroutines == 0 || st.Runtime.HeapAlloc == 0 || st.UptimeSeconds <= 0 || st.Process.PID == 0 {
		t.Fatalf("zero figures: %+v", st)
	}
	if again := s.Sample(context.Background()); !again.Time.Equal(st.Time) {
		t.Fatal("a second sample within MaxAge was collected again")
	}
	s.MaxAge = time.Nanosecond
	time.Sleep(time.Millisecond)
	if again := s.Sample(context.Background()); again.Time.Equal(st.Time) {
		t.Fatal("a sample older than MaxAge was reused")
	}
}
