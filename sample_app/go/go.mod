module pytest-canary/sample-app

go 1.19
