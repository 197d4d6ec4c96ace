pub struct Endpoint;
