// Command instrclient sends n sequential GET requests over one keep-alive connection and
// checks each status: the load of bench/instructions.sh, small and deterministic.
//
//	instrclient <url> <n> <status>
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: instrclient <url> <n> <status>")
		os.Exit(2)
	}
	url := os.Args[1]
	n, err1 := strconv.Atoi(os.Args[2])
	want, err2 := strconv.Atoi(os.Args[3])
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "n and status must be integers")
		os.Exit(2)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for i := 0; i < n; i++ {
		resp, err := client.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			fmt.Fprintf(os.Stderr, "request %d: status %d, want %d\n", i, resp.StatusCode, want)
			os.Exit(1)
		}
	}
}
