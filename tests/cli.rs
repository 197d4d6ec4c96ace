// end-to-end tests of the `ivr` binary live here
