// Package helmtest holds the tests of the deployment artefacts: the Helm
// chart in deploy/helm/tcpstate-exporter, the copies of the rules and
// dashboards it ships, and the Dockerfile.
//
// The chart tests run the helm binary (from PATH or $GOPATH/bin) to lint and
// render the chart with every values file in its ci/ folder, then decode
// each rendered object strictly, unknown fields being an error, into its
// Kubernetes or prometheus-operator Go type before asserting on it. They
// skip with a reason when helm is not installed.
package helmtest
